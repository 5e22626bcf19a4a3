"""A log-linear latency histogram in integer microseconds that merges exactly.

Values below 2048 µs each have their own bucket (exact to the microsecond); above that a
bucket spans at most 1/1024 of its value (0.1 % relative error), up to any value. Buckets
are kept sparse, so an idle histogram costs nothing and a busy one a few kilobytes, however
many values it holds. Two histograms merge by adding counts, so per-agent, per-round and
per-node histograms combine into exact cluster-wide percentiles (never average percentiles).

Percentiles return the midpoint of the bucket that holds the requested rank, clamped to the
exact minimum and maximum, which are tracked beside the buckets along with the exact sum.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

SUB_BITS = 11
SUB = 1 << SUB_BITS  # 2048 exact buckets
HALF = SUB >> 1  # 1024 buckets per power of two above that


def bucket_of(value_us: int) -> int:
    """Index of the bucket holding ``value_us`` (a non-negative integer)."""
    if value_us < SUB:
        return value_us if value_us > 0 else 0
    shift = value_us.bit_length() - SUB_BITS
    return SUB + (shift - 1) * HALF + ((value_us >> shift) - HALF)


def bucket_bounds(index: int) -> tuple[int, int]:
    """Inclusive lowest and highest value of a bucket."""
    if index < SUB:
        return index, index
    shift, top = divmod(index - SUB, HALF)
    shift += 1
    top += HALF
    return top << shift, ((top + 1) << shift) - 1


class Histogram:
    """Counts of integer-microsecond values in log-linear buckets, plus exact min/max/sum."""

    __slots__ = ("_frozen", "counts", "max", "min", "n", "total")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        # A histogram read from a report keeps its buckets as one array of (index, count)
        # pairs, sorted: 8 bytes a bucket instead of a dict entry's ~75, which matters when
        # the CLI holds thousands of agents' reports. Recording into it thaws it back.
        self._frozen: array[int] | None = None
        self.n = 0
        self.total = 0
        self.min = 0
        self.max = 0

    def record(self, value_us: int) -> None:
        """Record one value (negative values count as 0)."""
        v = value_us if value_us > 0 else 0
        i = (
            v
            if v < SUB
            else SUB
            + ((v.bit_length() - SUB_BITS) - 1) * HALF
            + ((v >> (v.bit_length() - SUB_BITS)) - HALF)
        )
        if self._frozen is not None:
            self._thaw()
        c = self.counts
        c[i] = c.get(i, 0) + 1
        if self.n == 0:
            self.min = self.max = v
        elif v < self.min:
            self.min = v
        elif v > self.max:
            self.max = v
        self.n += 1
        self.total += v

    def record_seconds(self, seconds: float) -> None:
        self.record(int(seconds * 1_000_000))

    def merge(self, other: Histogram) -> Histogram:
        """Add ``other`` into this histogram (exact) and return self."""
        if other.n == 0:
            return self
        if self._frozen is not None:
            self._thaw()
        c = self.counts
        for i, k in other.items():
            c[i] = c.get(i, 0) + k
        if self.n == 0:
            self.min, self.max = other.min, other.max
        else:
            self.min = min(self.min, other.min)
            self.max = max(self.max, other.max)
        self.n += other.n
        self.total += other.total
        return self

    @property
    def mean(self) -> float:
        """Exact mean in microseconds (0 when empty)."""
        return self.total / self.n if self.n else 0.0

    def percentile(self, q: float) -> int:
        """Value (µs) at quantile ``q`` in [0, 1]: the value with rank ceil(q * n)."""
        if self.n == 0:
            return 0
        if q <= 0:
            return self.min
        if q >= 1:
            return self.max
        rank = max(1, math.ceil(q * self.n))
        seen = 0
        for i, k in self.items():
            seen += k
            if seen >= rank:
                lo, hi = bucket_bounds(i)
                mid = (lo + hi) // 2
                return min(max(mid, self.min), self.max)
        return self.max

    def percentiles(self, qs: Iterable[float]) -> list[int]:
        """Several quantiles in one pass over the buckets (each as ``percentile``)."""
        return [self.percentile(q) for q in qs]

    def buckets(self, max_bins: int = 40) -> list[tuple[int, int, int]]:
        """Coarse (low_us, high_us, count) bins for display, at most ``max_bins`` of them."""
        if self.n == 0:
            return []
        items = list(self.items())
        lo = max(1, bucket_bounds(items[0][0])[0])
        hi = max(lo + 1, bucket_bounds(items[-1][0])[1])
        ratio = (hi / lo) ** (1 / max_bins) if hi > lo else 2.0
        edges = [lo * ratio**k for k in range(max_bins + 1)]
        bins = [0] * max_bins
        for i, k in items:
            v = max(bucket_bounds(i)[0], 1)
            j = 0 if v <= lo else min(max_bins - 1, int(math.log(v / lo, ratio)))
            bins[j] += k
        return [(int(edges[j]), int(edges[j + 1]), bins[j]) for j in range(max_bins) if bins[j]]

    # --- wire form -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A compact JSON-able form: sparse ``"index:count"`` pairs plus exact summaries."""
        return {
            "unit": "us",
            "subBucketBits": SUB_BITS,
            "count": self.n,
            "sum": self.total,
            "min": self.min,
            "max": self.max,
            "buckets": ",".join(f"{i}:{k}" for i, k in self.items()),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Histogram:
        if data.get("subBucketBits", SUB_BITS) != SUB_BITS or data.get("unit", "us") != "us":
            raise ValueError("histogram of an incompatible layout")
        h = cls()
        text = str(data.get("buckets") or "")
        pairs: array[int] = array("I")
        if text:
            for pair in text.split(","):
                i, k = pair.split(":")
                pairs.append(int(i))
                pairs.append(int(k))
        if any(pairs[j] >= pairs[j + 2] for j in range(0, len(pairs) - 2, 2)):
            raise ValueError("histogram buckets out of order")
        h._frozen = pairs
        total = sum(pairs[1::2])
        h.n = int(data.get("count", total))
        h.total = int(data.get("sum", 0))
        h.min = int(data.get("min", 0))
        h.max = int(data.get("max", 0))
        if h.n != total:
            raise ValueError("histogram count does not match its buckets")
        return h

    def items(self) -> Iterator[tuple[int, int]]:
        """(bucket index, count) in index order."""
        if self._frozen is not None:
            f = self._frozen
            return zip(f[0::2], f[1::2], strict=True)
        return iter(sorted(self.counts.items()))

    def _thaw(self) -> None:
        assert self._frozen is not None
        self.counts = dict(self.items())
        self._frozen = None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Histogram) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Histogram(n={self.n}, min={self.min}, mean={self.mean:.1f}, max={self.max})"
