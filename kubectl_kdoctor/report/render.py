"""Render a ``RunResult``: table, wide, json, yaml, junit (html lives in ``html.py``).

The table is for people: a headline, one line per node (per node and path for netreach),
then every failure with its reason. ``wide`` shows every target. json/yaml print the
KdoctorReport; junit gives CI one testsuite per node and one testcase per target.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from xml.etree import ElementTree as ET

import yaml
from tabulate import tabulate

from kubectl_kdoctor.engine.stats import merge_all
from kubectl_kdoctor.report.kdoctor import to_report, to_report_chunks
from kubectl_kdoctor.report.model import NodeResult, RunResult, TargetResult, merge_targets
from kubectl_kdoctor.report.verdict import MAX_SEND_LAG, Verdict, judge
from kubectl_kdoctor.task import NETREACH


def render(run: RunResult, output: str) -> str:
    return "".join(render_chunks(run, output))


def render_chunks(run: RunResult, output: str) -> Iterator[str]:
    """The report as text pieces, so a large JSON report is written without being held."""
    if output == "json":
        yield from to_report_chunks(run)
        return
    yield _render_whole(run, output)


def _render_whole(run: RunResult, output: str) -> str:
    if output == "yaml":
        return yaml.safe_dump(to_report(run), sort_keys=False, allow_unicode=True)
    if output == "junit":
        return junit(run)
    if output == "html":
        from kubectl_kdoctor.report.html import html

        return html(run)
    return table(run, wide=output == "wide")


def _ms(value: float | None) -> str:
    if value is None:
        return "-"  # nothing answered in time: no latency, not 0
    if value >= 1000:
        return f"{value / 1000:.2f}s"
    if value >= 10:
        return f"{value:.1f}ms"
    return f"{value:.2f}ms"


def _pct(rate: float) -> str:
    return f"{rate * 100:.2f}%" if rate < 1 else "100%"


def headline(run: RunResult) -> str:
    nodes = run.merged_by_node()
    targets = sum(len(n.targets) for n in nodes)
    missing = run.missing_nodes()
    verdict = "PASS" if run.passed else "FAIL"
    rounds = f", {run.rounds_done}/{run.rounds_expected} rounds" if run.rounds_expected > 1 else ""
    text = (
        f"{run.kind} {run.name} ({run.mode}): {verdict} - {len(nodes)} node(s), "
        f"{targets} target(s){rounds}"
    )
    if missing:
        text += f", {len({n for v in missing.values() for n in v})} node(s) never reported"
    if run.skipped_nodes:
        skipped = sorted(run.skipped_nodes.items())
        named = ", ".join(f"{k}: {_short(v)}" for k, v in skipped[:3])
        more = f", +{len(skipped) - 3} more" if len(skipped) > 3 else ""
        text += f", {len(skipped)} skipped ({named}{more})"
    return text


def _short(reason: str) -> str:
    """The first word of a skip reason (``NotReady (KubeletNotReady)`` -> ``NotReady``)."""
    return reason.split(" ", 1)[0]


def _row(t: TargetResult) -> list[str]:
    s = t.stats
    lat = t.latencies_ms() or {}
    return [
        str(s.requests),
        f"{s.tps:.1f}",
        _pct(s.success_rate),
        _ms(lat.get("mean")),
        _ms(lat.get("p50")),
        _ms(lat.get("p90")),
        _ms(lat.get("p99")),
        _ms(lat.get("max")),
        str(s.late + s.skipped),
        ("PASS" if t.passed else "FAIL") + ("" if not t.verdict.invalid else " (lag!)"),
    ]


COLUMNS = ["REQUESTS", "TPS", "SUCCESS", "MEAN", "P50", "P90", "P99", "MAX", "LATE+SKIP", "RESULT"]


def _group(run: RunResult, node: NodeResult) -> list[tuple[str, TargetResult]]:
    """Summary rows of one node: per path for netreach (merged), per target otherwise."""
    if run.kind != NETREACH:
        return [(t.stats.name, t) for t in node.targets]
    by_path: dict[str, list[TargetResult]] = {}
    for t in node.targets:
        key = f"{t.path or '?'}/{t.family or '?'}"
        by_path.setdefault(key, []).append(t)
    rows = []
    for key, parts in by_path.items():
        stats = merge_all([p.stats for p in parts], key)
        assert stats is not None
        verdict = judge(stats, run.expect)
        if any(not p.passed for p in parts):
            bad = sum(1 for p in parts if not p.passed)
            verdict = Verdict(False, (f"{bad}/{len(parts)} targets failed",), verdict.invalid)
        rows.append(
            (f"{key} ({len(parts)})", TargetResult(stats, verdict, parts[0].path, parts[0].family))
        )
    return rows


def table(run: RunResult, wide: bool = False) -> str:
    lines = [headline(run), ""]
    rows = []
    nodes = run.merged_by_node()
    condensed = not wide and len(nodes) > CONDENSE_NODES
    if condensed:
        everyone = NodeResult(
            node=f"(all {len(nodes)})", targets=[t for n in nodes for t in n.targets]
        )
        rows += [[everyone.node, label, *_row(t)] for label, t in _group(run, everyone)]
    for n in nodes:
        if condensed and n.passed:
            continue  # a large cluster's table lists only the nodes with a failure
        entries = [(t.stats.name, t) for t in n.targets] if wide else _group(run, n)
        if not entries:
            rows.append([n.node, n.error or "(no targets)", *[""] * (len(COLUMNS) - 1), "FAIL"])
        for label, t in entries:
            extra = [t.target_node or "", t.stats.url] if wide else []
            rows.append([n.node, label, *extra, *_row(t)])
    headers = ["NODE", "PATH (TARGETS)" if run.kind == NETREACH and not wide else "TARGET"]
    if wide:
        headers += ["TO NODE", "URL/SERVER"]
    if rows:
        lines.append(
            tabulate(rows, headers=[*headers, *COLUMNS], tablefmt="plain", disable_numparse=True)
        )
    failures = list(_failures(run, nodes))
    if len(failures) > MAX_FAILURE_LINES and not wide:
        failures = _grouped_failures(run, nodes)
    if failures:
        shown = failures if wide else failures[:MAX_FAILURE_LINES]
        lines += ["", "Failures:"] + [f"  {f}" for f in shown]
        if len(shown) < len(failures):
            lines.append(f"  ... and {len(failures) - len(shown)} more (-o wide lists every one)")
    from kubectl_kdoctor.report.hints import all_hints

    found = all_hints(run)
    if found:
        lines += ["", "Likely culprits:"] + [f"  {h}" for h in found]
    if run.skipped_nodes:
        lines += ["", "Skipped nodes:"] + [
            f"  {k}: {v}" for k, v in sorted(run.skipped_nodes.items())
        ]
    invalid = [t for n in nodes for t in n.targets if t.verdict.invalid]
    if invalid:
        lines += [
            "",
            f"Note: {len(invalid)} target(s) had a generator send lag p99 above "
            f"{MAX_SEND_LAG * 1000:.0f}ms (marked 'lag!'): their latency includes the generator's "
            "own delay.",
        ]
    lines += [f"Note: {x}" for x in run.notes]
    return "\n".join(lines) + "\n"


MAX_FAILURE_LINES = 40
CONDENSE_NODES = 50  # above this many nodes the table sums up passing nodes in one line per path


def _grouped_failures(run: RunResult, nodes: list[NodeResult]) -> list[str]:
    """Failing cells grouped by destination and path ("node-17 [pod/ipv4]: fails from 99 of
    99 nodes"), then by source, so a large cluster's table stays readable."""
    out = run.skipped_failures() + [
        f"{node}: never reported (round {r})"
        for r, ms in sorted(run.missing_nodes().items())
        for node in ms
    ]
    out += [f"{n.node}: {n.error}" for n in nodes if n.error]
    total: dict[tuple[str, str], set[str]] = {}
    bad: dict[tuple[str, str], set[str]] = {}
    for n in nodes:
        for t in n.targets:
            key = (t.target_node or "(service)", f"{t.path}/{t.family}")
            total.setdefault(key, set()).add(n.node)
            if not t.passed:
                bad.setdefault(key, set()).add(n.node)
    for (dest, path), srcs in sorted(bad.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        n_all = len(total[(dest, path)])
        who = (
            "every node"
            if len(srcs) == n_all
            else ", ".join(sorted(srcs)[:5]) + (" ..." if len(srcs) > 5 else "")
        )
        out.append(f"{dest} [{path}]: fails from {len(srcs)} of {n_all} nodes ({who})")
    return out


def _failures(run: RunResult, nodes: Iterable[NodeResult]) -> Iterable[str]:
    yield from run.skipped_failures()
    for r, missing in sorted(run.missing_nodes().items()):
        for node in missing:
            yield f"{node}: never reported (round {r})"
    for n in nodes:
        if n.error:
            yield f"{n.node}: {n.error}"
        for t in n.targets:
            if not t.passed:
                where = f" -> {t.target_node}" if t.target_node else ""
                path = f" [{t.path}/{t.family}]" if t.path else ""
                yield f"{n.node}{where}{path} {t.stats.name}: {'; '.join(t.verdict.reasons)}"


def junit(run: RunResult) -> str:
    suites = ET.Element("testsuites", name=f"kdoctor {run.kind} {run.name}")
    from kubectl_kdoctor.report.hints import all_hints

    found = all_hints(run)
    culprits = ("\nLikely culprits:\n" + "\n".join(f"  {x}" for x in found)) if found else ""
    total = failures = skipped = 0
    for n in run.merged_by_node():
        tests = merge_targets(n.targets, run.expect) if n.targets else []
        fails = sum(1 for t in tests if not t.passed) + (1 if n.error else 0)
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=n.node,
            tests=str(len(tests) + (1 if n.error else 0)),
            failures=str(fails),
            errors="0",
            time=f"{max(0.0, n.end - n.start):.3f}",
        )
        if n.error:
            case = ET.SubElement(suite, "testcase", classname=f"{run.kind}.{n.node}", name="agent")
            ET.SubElement(case, "failure", message=n.error)
        for t in tests:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"{run.kind}.{n.node}",
                name=t.stats.name,
                time=f"{t.stats.duration:.3f}",
            )
            lat = t.latencies_ms()
            figures = (
                f"mean={lat['mean']:.3f}ms p99={lat['p99']:.3f}ms max={lat['max']:.3f}ms"
                if lat
                else "mean=- p99=- max=- (nothing answered in time)"
            )
            ET.SubElement(
                case, "system-out"
            ).text = (
                f"requests={t.stats.requests} success_rate={t.stats.success_rate:.4f} {figures}"
            )
            if not t.passed:
                failure = ET.SubElement(case, "failure", message="; ".join(t.verdict.reasons))
                if culprits:
                    failure.text = "; ".join(t.verdict.reasons) + culprits
        total += len(tests)
        failures += fails
    for r, missing in sorted(run.missing_nodes().items()):
        for node in missing:
            suite = ET.SubElement(
                suites, "testsuite", name=node, tests="1", failures="1", errors="0"
            )
            case = ET.SubElement(suite, "testcase", classname=f"{run.kind}.{node}", name="agent")
            ET.SubElement(case, "failure", message=f"never reported (round {r})")
            total += 1
            failures += 1
    for node, why in sorted(run.skipped_nodes.items()):
        # A skipped node: a skipped testcase, or a failure with --require-all-nodes.
        required = run.expect.all_nodes
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=node,
            tests="1",
            failures="1" if required else "0",
            errors="0",
            skipped="0" if required else "1",
        )
        case = ET.SubElement(suite, "testcase", classname=f"{run.kind}.{node}", name="agent")
        if required:
            ET.SubElement(case, "failure", message=f"skipped ({why}); --require-all-nodes")
        else:
            ET.SubElement(case, "skipped", message=f"node skipped: {why}")
            skipped += 1
        total += 1
        failures += 1 if required else 0
    suites.set("tests", str(total))
    suites.set("skipped", str(skipped))
    suites.set("failures", str(failures))
    ET.indent(suites)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
    )
