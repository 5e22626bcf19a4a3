"""SIGTERM and SIGHUP end a cluster run the way Ctrl-C does: as ``KeyboardInterrupt``, so the
mode deletes what it created and the CLI exits 130. A second SIGTERM or SIGHUP while that
cleanup runs is ignored (a CI runner's terminate-then-kill must not cut the cleanup short);
a second Ctrl-C still interrupts."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = tuple(s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)


@contextmanager
def as_interrupt() -> Iterator[None]:
    """Within the block, the first SIGTERM/SIGHUP raises ``KeyboardInterrupt``; later ones are
    ignored. The previous handlers come back on exit. Outside the main thread: no change."""
    raised = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal raised
        if raised:
            return
        raised = True
        raise KeyboardInterrupt

    old: dict[int, object] = {}
    try:
        for sig in SIGNALS:
            old[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread
        for sig, h in old.items():
            signal.signal(sig, h)  # type: ignore[arg-type]
        yield
        return
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)  # type: ignore[arg-type]
