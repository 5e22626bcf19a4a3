"""Shared pytest configuration: fixtures live in tests/fixtures/ as plugin modules.

No silent skips where every test must run: under ``CI=true`` (or ``KDOCTOR_REQUIRE=all``) a
test that skips is an error that carries the skip's reason (no cluster binaries, no
kdoctor source, an opt-in suite left off...). ``KDOCTOR_REQUIRE`` may instead list the
kinds that must run: ``cluster``, ``realnode``, ``dist``, ``kdoctor-source`` (comma
separated); ``KDOCTOR_REQUIRE=none`` turns it off, under CI too.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

pytest_plugins = ["tests.fixtures.servers", "tests.fixtures.cluster", "tests.fixtures.realnode"]

REQUIRE_ENV = "KDOCTOR_REQUIRE"
KINDS = ("cluster", "realnode", "dist", "kdoctor-source")


def required_kinds() -> tuple[set[str], str]:
    """-> (the kinds whose skips fail, "all" meaning every skip; what asked for it)."""
    raw = os.environ.get(REQUIRE_ENV, "").strip().lower()
    if raw:
        if raw == "none":
            return set(), f"{REQUIRE_ENV}=none"
        kinds = {k.strip() for k in raw.split(",") if k.strip()}
        unknown = kinds - {*KINDS, "all"}
        if unknown:
            raise pytest.UsageError(
                f"{REQUIRE_ENV}: unknown kind(s) {', '.join(sorted(unknown))}; "
                f"expected all, none or a list of {', '.join(KINDS)}"
            )
        return ({"all"} if "all" in kinds else kinds), f"{REQUIRE_ENV}={raw}"
    if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        return {"all"}, "CI=true"
    return set(), ""


def item_kinds(item: pytest.Item, reason: str) -> set[str]:
    kinds = {k for k in ("cluster", "realnode") if item.get_closest_marker(k)}
    if "tests/dist/" in item.nodeid.replace(os.sep, "/"):
        kinds.add("dist")
    if "KDOCTOR_SOURCE" in reason:
        kinds.add("kdoctor-source")
    return kinds


def pytest_configure(config: pytest.Config) -> None:
    config._kdoctor_require = required_kinds()  # type: ignore[attr-defined]


def pytest_report_header(config: pytest.Config) -> str | None:
    kinds, why = config._kdoctor_require  # type: ignore[attr-defined]
    if not kinds:
        return None
    what = "every test" if "all" in kinds else ", ".join(sorted(kinds)) + " tests"
    return f"kdoctor: {what} must run, a skip is an error ({why})"


def skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    kinds, why = item.config._kdoctor_require  # type: ignore[attr-defined]
    if not kinds:
        return
    reason = skip_reason(report)
    hit = item_kinds(item, reason)
    if "all" not in kinds:
        hit &= kinds
        if not hit:
            return
    what = ", ".join(sorted(hit)) + " test" if hit else "test"
    report.outcome = "failed"
    report.longrepr = f"{why} requires this {what} to run, but it was skipped: {reason}"
