"""Go-style durations (``500ms``, ``10s``, ``1m30s``, ``1h``) to and from seconds."""

from __future__ import annotations

import math
import re

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
MAX_SECONDS = (2**63 - 1) / 1e9  # Go's time.Duration limit, about 292 years
_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")  # ASCII digits only


def parse_duration(text: str) -> float:
    """Parse a Go duration into seconds; raise ValueError with a short reason.

    Like Go's ``time.ParseDuration``: a sequence of decimal numbers, each with a unit;
    ``0`` alone is allowed; negative durations are refused here (nothing takes them).
    """
    s = text  # as Go: no surrounding spaces
    if not s:
        raise ValueError("empty duration")
    if s == "0":
        return 0.0
    if s[0] in "+-":
        if s[0] == "-":
            raise ValueError(f"negative duration {_short(text)}")
        s = s[1:]
    pos = 0
    total = 0.0
    while pos < len(s):
        m = _PART.match(s, pos)
        if not m:
            raise ValueError(f"invalid duration {_short(text)} (expected e.g. 500ms, 10s, 1m30s)")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
        if not math.isfinite(total) or total > MAX_SECONDS:
            raise ValueError(f"duration {_short(text)} out of range (at most about 292 years)")
    return total


def _short(text: str) -> str:
    return repr(text) if len(text) <= 40 else repr(text[:37] + "...")


def format_duration(seconds: float) -> str:
    """Format seconds the way Go's ``time.Duration.String`` does (``1m30s``, ``1.5s``, ``250ms``)."""
    if seconds == 0:
        return "0s"
    neg = seconds < 0
    ns = round(abs(seconds) * 1e9)
    if ns < 1000:
        out = f"{ns}ns"
    elif ns < 1_000_000:
        out = f"{_trim(ns / 1e3)}µs"
    elif ns < 1_000_000_000:
        out = f"{_trim(ns / 1e6)}ms"
    else:
        h, rem = divmod(ns, 3_600_000_000_000)
        m, rem = divmod(rem, 60_000_000_000)
        sec = _trim(rem / 1e9)
        out = (f"{h}h" if h else "") + (f"{m}m" if h or m else "") + f"{sec}s"
    return ("-" if neg else "") + out


def _trim(value: float) -> str:
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"
