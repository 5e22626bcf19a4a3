from __future__ import annotations

import pytest

from kubectl_kdoctor.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10),
        ("1m30s", 90),
        ("1h", 3600),
        ("1.5s", 1.5),
        ("250us", 0.00025),
        ("0", 0),
    ],
)
def test_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "s", "1x", "-1s", "1m-1s", "1 s"])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(90, "1m30s"), (1.5, "1.5s"), (0.25, "250ms"), (0, "0s"), (3600, "1h0m0s")],
)
def test_format_like_go(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
