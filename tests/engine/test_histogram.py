"""Properties of the log-linear histogram: exact merges and bounded percentile error."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from kubectl_kdoctor.engine.histogram import Histogram, bucket_bounds, bucket_of

values = st.lists(st.integers(min_value=0, max_value=120_000_000), min_size=1, max_size=400)
quantiles = st.floats(min_value=0.0, max_value=1.0)


def hist(vs: list[int]) -> Histogram:
    h = Histogram()
    for v in vs:
        h.record(v)
    return h


@given(values, values)
def test_merge_equals_recording_everything(a: list[int], b: list[int]) -> None:
    merged = hist(a).merge(hist(b))
    assert merged == hist(a + b)
    assert merged.n == len(a) + len(b)
    assert merged.min == min(a + b) and merged.max == max(a + b)
    assert merged.total == sum(a + b)


@given(values, values, values)
def test_merge_is_associative_and_commutative(a: list[int], b: list[int], c: list[int]) -> None:
    assert hist(a).merge(hist(b)).merge(hist(c)) == hist(c).merge(hist(b).merge(hist(a)))


@settings(max_examples=300)
@given(values, quantiles)
def test_percentile_within_a_tenth_of_a_percent(vs: list[int], q: float) -> None:
    h = hist(vs)
    exact = (
        sorted(vs)[max(1, math.ceil(q * len(vs))) - 1]
        if 0 < q < 1
        else (min(vs) if q <= 0 else max(vs))
    )
    got = h.percentile(q)
    assert abs(got - exact) <= max(1.0, exact * 0.001), (got, exact)


@given(values)
def test_round_trip_through_dict(vs: list[int]) -> None:
    h = hist(vs)
    assert Histogram.from_dict(h.to_dict()) == h


@given(st.integers(min_value=0, max_value=10**12))
def test_bucket_bounds_hold_the_value(v: int) -> None:
    lo, hi = bucket_bounds(bucket_of(v))
    assert lo <= v <= hi
    assert hi - lo <= max(0, lo // 1024)


def test_empty_histogram() -> None:
    h = Histogram()
    assert h.percentile(0.99) == 0 and h.mean == 0.0 and h.buckets() == []
    assert hist([5]).merge(Histogram()) == hist([5])
