"""``-o html`` as a person sees it: the page rendered by headless Chromium, and the
screenshot's pixels checked for the matrix's verdict colours (report/html.py's CSS: ``ok0``
#d1f7d6 for a passing cell with p99 < 5 ms, ``bad`` #ffd8d3 for a failing one) and the
histograms' bars. The run is synthetic (no cluster): three nodes, the pod path from node-1
to node-2 losing a third of its requests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from kubectl_kdoctor.engine.stats import TargetStats
from kubectl_kdoctor.report.html import html
from kubectl_kdoctor.report.model import NodeResult, RunResult, TargetResult
from kubectl_kdoctor.report.verdict import judge
from kubectl_kdoctor.task import NETREACH, Expect
from tests.report import png

NODES = ("node-1", "node-2", "node-3")
OK0, BAD = "#d1f7d6", "#ffd8d3"  # .ok0 and .bad in report/html.py
BAR_PASS, BAR_FAIL = "#1a7f37", "#cf222e"  # histogram bars


def _stats(name: str, fails: int) -> TargetStats:
    s = TargetStats(name=name, url="http://10.244.2.7:80/", qps=50, planned=100)
    s.start, s.end, s.attack = 1_700_000_000.0, 1_700_000_002.0, 2.0
    for i in range(100 - fails):
        s.mark_sent(0.0001)
        lat = 300 + (i * 37) % 1900  # 0.3 .. 2.2 ms: p99 well under 5 ms
        s.ok("200", lat, lat // 2, 120)
    for _ in range(fails):
        s.mark_sent(0.0001)
        s.failed("timeout", "timeout after 1s")
    return s


def synthetic_run() -> RunResult:
    expect = Expect(success_rate=1.0)
    run = RunResult(
        kind=NETREACH,
        name="mesh",
        created=1_700_000_000.0,
        spec={"request": {"qps": 50}},
        expect=expect,
        expected_nodes=list(NODES),
        mode="job",
    )
    for src in NODES:
        node = NodeResult(node=src, pod=f"agent-{src}", start=1_700_000_000.0, end=1_700_000_003.0)
        for path in ("pod", "clusterip"):
            for dst in NODES:
                fails = 34 if (src, dst, path) == ("node-1", "node-2", "pod") else 0
                s = _stats(f"{path}_{src}_to_{dst}", fails)
                node.targets.append(TargetResult(s, judge(s, expect), path, "ipv4", dst))
        run.nodes.append(node)
    return run


def _chromium() -> str:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.skip("chromium is not installed (hack/setup installs it)")
    return exe


def test_html_report_screenshot_shows_the_matrix(tmp_path: Path) -> None:
    run = synthetic_run()
    assert not run.passed
    page = tmp_path / "report.html"
    page.write_text(html(run), encoding="utf-8")
    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1200,1600",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.is_file(), proc.stderr[-2000:]
    width, height, rows = png.decode(shot.read_bytes())
    assert (width, height) == (1200, 1600)
    counts = png.colours(rows)
    # Eighteen cells (2 paths x 3 x 3) of about 90 x 40 px: 17 passing, 1 failing; the
    # legend adds one small swatch of each colour.
    assert counts[OK0] > 17 * 2000, counts.most_common(8)
    assert counts[BAD] > 2000, counts.most_common(8)
    assert counts[OK0] > 8 * counts[BAD]
    # The failing cell is in the first (pod) matrix, above every row of the clusterip one.
    bad_rows = png.rows_with(rows, BAD)
    ok_rows = png.rows_with(rows, OK0)
    assert bad_rows and ok_rows
    assert max(bad_rows) < max(ok_rows)
    # Histograms: green bars for passing targets, red for the failing one.
    assert counts[BAR_PASS] > 1000
    assert counts[BAR_FAIL] > 50


def test_html_report_is_self_contained() -> None:
    page = html(synthetic_run())
    for needle in ("<script", "<link", "<img", "http://", "https://", "@import", "url("):
        assert needle not in page
