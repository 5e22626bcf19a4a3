"""TargetStats: accounting helpers, wire form and merges, on stats from a real run."""

from __future__ import annotations

import json

from bench.servers import Nginx
from kubectl_kdoctor.engine.spec import HttpSpec
from kubectl_kdoctor.engine.stats import BAD_STATUS, OVERLOAD, TIMEOUT, TargetStats, merge_all
from tests.engine._util import run_one


def test_round_trip_of_a_real_run(nginx: Nginx) -> None:
    s = run_one(HttpSpec(nginx.url("/status/404")), qps=40, duration=0.5)
    data = json.loads(json.dumps(s.to_dict()))
    back = TargetStats.from_dict(data)
    assert back.to_dict() == s.to_dict()
    assert back.latency == s.latency and back.errors == {BAD_STATUS: 20}


def test_merge_adds_everything() -> None:
    a, b = TargetStats("x", qps=10), TargetStats("x", qps=20)
    a.planned, b.planned = 10, 20
    for i in range(10):
        a.mark_sent(0.001)
        a.ok("200", 1000 + i, 900 + i, 10)
    for i in range(18):
        b.mark_sent(0.010)
        b.ok("200", 5000 + i, 4000 + i, 10)
    b.failed(TIMEOUT, "slow")
    b.skip()
    a.start, a.end, b.start, b.end = 100.0, 101.0, 100.5, 102.0
    expected_latency = TargetStats.from_dict(a.to_dict()).latency.merge(b.latency)
    m = merge_all([a, b], name="all")
    assert m is not None and m.name == "all"
    assert (m.planned, m.sent, m.completed, m.success, m.skipped) == (30, 28, 29, 28, 1)
    assert m.errors == {TIMEOUT: 1, OVERLOAD: 1}
    assert m.codes == {"200": 28, "0": 1}
    assert m.late == 18 and m.bytes_in == 280
    assert m.latency == expected_latency
    assert (m.start, m.end, m.qps) == (100.0, 102.0, 20)
    assert a.sent == 10  # merge_all copies; the inputs are unchanged
    assert m.success_rate == 28 / 30
    assert merge_all([]) is None
