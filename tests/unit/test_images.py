"""The agent image reference: version tag, release digest pin, overrides."""

from __future__ import annotations

import pytest

from kubectl_kdoctor import __version__, _image_digest
from kubectl_kdoctor.images import IMAGE_ENV, default_image, pinned_digest, tagged_image

DIGEST = "sha256:" + "ab" * 32


def test_repo_build_uses_the_version_tag(monkeypatch: pytest.MonkeyPatch) -> None:
    # The pin is written only by the release pipeline: committed empty.
    assert _image_digest.DIGEST == ""
    monkeypatch.delenv(IMAGE_ENV, raising=False)
    assert default_image() == f"ghcr.io/kubectl-kdoctor/agent:v{__version__}"


def test_release_pins_the_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(IMAGE_ENV, raising=False)
    monkeypatch.setattr(_image_digest, "DIGEST", DIGEST)
    assert default_image() == f"{tagged_image()}@{DIGEST}"
    assert pinned_digest() == DIGEST


def test_environment_overrides_the_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_image_digest, "DIGEST", DIGEST)
    monkeypatch.setenv(IMAGE_ENV, "registry.example/agent:mine")
    assert default_image() == "registry.example/agent:mine"


@pytest.mark.parametrize(
    "bad", ["sha256:abc", "sha512:" + "ab" * 64, "latest", "SHA256:" + "AB" * 32]
)
def test_a_malformed_pin_falls_back_to_the_tag(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.delenv(IMAGE_ENV, raising=False)
    monkeypatch.setattr(_image_digest, "DIGEST", bad)
    assert default_image() == tagged_image()


def test_the_pull_error_points_at_an_existing_docs_section() -> None:
    from pathlib import Path

    from kubectl_kdoctor.images import GET_IMAGE_DOC

    path, _, anchor = GET_IMAGE_DOC.split("/blob/main/", 1)[1].partition("#")
    doc = Path(__file__).resolve().parents[2] / path
    headings = [ln.lstrip("#").strip() for ln in doc.read_text().splitlines() if ln.startswith("#")]
    assert anchor in {h.lower().replace(" ", "-") for h in headings}
