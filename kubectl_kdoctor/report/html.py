"""``-o html``: one self-contained page (no external assets): the node x node x path matrix
coloured by verdict and p99 latency, per-node summaries, failures, and per-target latency
histograms drawn as inline SVG."""

from __future__ import annotations

import html as h
from collections.abc import Iterable

from kubectl_kdoctor.report.model import RunResult, TargetResult, merge_targets
from kubectl_kdoctor.report.render import headline
from kubectl_kdoctor.task import NETREACH

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1b1f24;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}
.pass{color:#116329}.fail{color:#b3261e}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:right}
th{background:#f6f8fa}td.l,th.l{text-align:left}
td.cell{min-width:90px;text-align:center}
.ok0{background:#d1f7d6}.ok1{background:#e9f8c8}.ok2{background:#fff3c4}.bad{background:#ffd8d3}.none{background:#f6f8fa;color:#8c959f}
.hist{display:inline-block;margin:6px 12px 6px 0;vertical-align:top;font-size:12px}
.legend span{display:inline-block;padding:2px 8px;margin-right:6px;border:1px solid #d0d7de}
ul.fail li{margin:2px 0}
"""


def _cls(t: TargetResult) -> str:
    if not t.passed:
        return "bad"
    lat = t.latencies_ms()
    if lat is None:
        return "bad"  # a passing target always has answers
    p99 = lat["p99"]
    return "ok0" if p99 < 5 else "ok1" if p99 < 50 else "ok2"


def _cell(t: TargetResult | None) -> str:
    if t is None:
        return '<td class="cell none">-</td>'
    lat = t.latencies_ms()
    figures = (
        f"p50 {lat['p50']:.2f}ms p99 {lat['p99']:.2f}ms max {lat['max']:.2f}ms"
        if lat
        else "no answer in time: no latency"
    )
    tip = h.escape(
        f"{t.stats.name}\nrequests {t.stats.requests}, success {t.stats.success_rate:.2%}\n"
        + figures
        + ("" if t.passed else "\n" + "; ".join(t.verdict.reasons))
    )
    p99 = f"p99 {lat['p99']:.1f}ms" if lat else "p99 -"
    return (
        f'<td class="cell {_cls(t)}" title="{tip}">{t.stats.success_rate:.0%}<br>'
        f"<small>{p99}</small></td>"
    )


def _matrix(run: RunResult) -> str:
    nodes = run.merged_by_node()
    sources = [n.node for n in nodes]
    dests = sorted(
        {t.target_node for n in nodes for t in n.targets if t.target_node} | set(sources)
    )
    paths: list[tuple[str, str]] = []
    for n in nodes:
        for t in n.targets:
            key = (t.path or "?", t.family or "")
            if key not in paths:
                paths.append(key)
    out = []
    for path, fam in paths:
        per_dest = path not in ("loadbalancer", "ingress")
        cols = dests if per_dest else ["(service)"]
        rows = []
        for n in nodes:
            cells = []
            for d in cols:
                tgs = [
                    t
                    for t in n.targets
                    if (t.path or "?") == path
                    and (t.family or "") == fam
                    and (not per_dest or t.target_node == d)
                ]
                merged = merge_targets(tgs, run.expect)
                cells.append(
                    _cell(merged[0] if len(merged) == 1 else None) if merged else _cell(None)
                )
            rows.append(f'<tr><th class="l">{h.escape(n.node)}</th>{"".join(cells)}</tr>')
        head = "".join(f"<th>{h.escape(d)}</th>" for d in cols)
        out.append(
            f"<h2>{h.escape(path)} {h.escape(fam)}</h2><table><tr><th class='l'>from \\ to</th>{head}</tr>"
            + "".join(rows)
            + "</table>"
        )
    return "".join(out)


def _svg(t: TargetResult) -> str:
    bins = t.stats.latency.buckets(30)
    if not bins:
        return ""
    w, ht = 300, 90
    top = max(c for _, _, c in bins)
    bw = w / len(bins)
    bars = "".join(
        f'<rect x="{i * bw:.1f}" y="{ht - ht * c / top:.1f}" width="{max(bw - 1, 1):.1f}" '
        f'height="{ht * c / top:.1f}" fill="{"#1a7f37" if t.passed else "#cf222e"}">'
        f"<title>{lo / 1000:.3f}-{hi / 1000:.3f} ms: {c}</title></rect>"
        for i, (lo, hi, c) in enumerate(bins)
    )
    lo_ms, hi_ms = bins[0][0] / 1000, bins[-1][1] / 1000
    return (
        f'<div class="hist"><div>{h.escape(t.stats.name)}</div>'
        f'<svg width="{w}" height="{ht + 14}" role="img">{bars}'
        f'<text x="0" y="{ht + 12}" font-size="10">{lo_ms:.2f}ms</text>'
        f'<text x="{w}" y="{ht + 12}" font-size="10" text-anchor="end">{hi_ms:.2f}ms</text></svg></div>'
    )


def _summary_rows(run: RunResult) -> Iterable[str]:
    for n in run.merged_by_node():
        for t in n.targets:
            lat = t.latencies_ms()
            verdict = (
                '<span class="pass">PASS</span>' if t.passed else '<span class="fail">FAIL</span>'
            )
            yield (
                f"<tr><td class='l'>{h.escape(n.node)}</td><td class='l'>{h.escape(t.stats.name)}</td>"
                f"<td>{t.stats.requests}</td><td>{t.stats.success_rate:.2%}</td>"
                + "".join(
                    f"<td>{lat[k]:.2f}</td>" if lat else "<td>-</td>"
                    for k in ("mean", "p50", "p90", "p99", "max")
                )
                + f"<td>{verdict}</td></tr>"
            )


def html(run: RunResult) -> str:
    verdict = "pass" if run.passed else "fail"
    failures = run.skipped_failures()
    for r, nodes in sorted(run.missing_nodes().items()):
        failures += [f"{n}: never reported (round {r})" for n in nodes]
    for n in run.merged_by_node():
        if n.error:
            failures.append(f"{n.node}: {n.error}")
        failures += [
            f"{n.node} {t.stats.name}: {'; '.join(t.verdict.reasons)}"
            for t in n.targets
            if not t.passed
        ]
    body = [
        f"<h1 class='{verdict}'>{h.escape(headline(run))}</h1>",
        '<div class="legend">cells: success rate and p99 - '
        '<span class="ok0">p99 &lt; 5ms</span><span class="ok1">&lt; 50ms</span>'
        '<span class="ok2">&ge; 50ms</span><span class="bad">failed</span></div>',
    ]
    if run.kind == NETREACH:
        body.append(_matrix(run))
    body.append(
        "<h2>Targets</h2><table><tr><th class='l'>node</th><th class='l'>target</th><th>requests</th>"
        "<th>success</th><th>mean ms</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>max ms</th>"
        "<th>verdict</th></tr>" + "".join(_summary_rows(run)) + "</table>"
    )
    if failures:
        body.append(
            "<h2>Failures</h2><ul class='fail'>"
            + "".join(f"<li>{h.escape(f)}</li>" for f in failures)
            + "</ul>"
        )
    from kubectl_kdoctor.report.hints import all_hints

    found = all_hints(run)
    if found:
        body.append(
            "<h2>Likely culprits</h2><ul class='hint'>"
            + "".join(f"<li>{h.escape(x)}</li>" for x in found)
            + "</ul>"
        )
    if run.skipped_nodes:
        body.append(
            "<h2>Skipped nodes</h2><ul class='skip'>"
            + "".join(
                f"<li>{h.escape(node)}: {h.escape(why)}</li>"
                for node, why in sorted(run.skipped_nodes.items())
            )
            + "</ul>"
        )
    hists = "".join(_svg(t) for n in run.merged_by_node() for t in n.targets)
    if hists:
        body.append("<h2>Latency histograms</h2>" + hists)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>kdoctor {h.escape(run.kind)} {h.escape(run.name)}</title><style>{CSS}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
