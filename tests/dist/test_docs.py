"""The user docs stay true to the CLI: every command has a reference page naming each of its
flags and arguments (the shared ones may live in docs/commands/common.md when the page links
it), no page names a flag its command lacks, and every relative link in docs/ and README.md
points at a file (and heading) that exists."""

from __future__ import annotations

import re

import click
import pytest

from kubectl_kdoctor.cli import CONTEXT, cli
from tests.dist.conftest import REPO

DOCS = REPO / "docs"
COMMANDS = DOCS / "commands"
FLAG = re.compile(r"(?<![\w-])(--?[a-zA-Z][\w-]*)")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _commands() -> list[str]:
    return sorted(n for n, c in cli.commands.items() if not c.hidden)


def _spellings(cmd: click.Command) -> tuple[set[str], set[str]]:
    """The command's option spellings (``-o``, ``--output``, ``-h``, ...) and argument names."""
    root = click.Context(cli, info_name="kubectl kdoctor", **CONTEXT)  # -h and --help
    ctx = root if cmd is cli else click.Context(cmd, info_name=cmd.name, parent=root)
    opts: set[str] = set()
    args: set[str] = set()
    for p in cmd.get_params(ctx):
        if isinstance(p, click.Argument):
            args.add((p.name or "").upper())
        else:
            opts.update(p.opts)
            opts.update(p.secondary_opts)
    return opts, args


def _flags_in(text: str) -> set[str]:
    """Flags named in inline code spans of a page: not in prose (words with dashes) nor in
    fenced examples (which may show other commands)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    out: set[str] = set()
    for span in re.findall(r"`([^`\n]+)`", text):
        out.update(FLAG.findall(span))
    return out


def _table_flags(text: str) -> set[str]:
    """Flags in the first column of the page's tables: what it documents as the command's."""
    out: set[str] = set()
    for line in text.splitlines():
        if line.startswith("| `"):
            out |= _flags_in(line.split(" | ")[0])
    return out


def _slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("name", _commands())
def test_every_flag_of_the_command_is_documented(name: str) -> None:
    page = COMMANDS / f"{name}.md"
    assert page.is_file(), f"no reference page {page}"
    text = page.read_text()
    shared = (COMMANDS / "common.md").read_text() if "(common.md" in text else ""
    opts, args = _spellings(cli.commands[name])
    missing = sorted(opts - _flags_in(text) - _flags_in(shared))
    assert not missing, f"{page.name} does not document {missing}"
    for arg in args:
        assert f"`{arg}`" in text, f"{page.name} does not document the argument {arg}"


@pytest.mark.parametrize("name", _commands())
def test_no_page_documents_a_flag_the_command_lacks(name: str) -> None:
    opts, _ = _spellings(cli.commands[name])
    # Prose and examples may mention other commands' flags; the flag tables may not.
    extra = sorted(_table_flags((COMMANDS / f"{name}.md").read_text()) - opts)
    assert not extra, f"{name}.md names flags {name} does not take: {extra}"


def test_shared_flags_page_names_only_real_flags() -> None:
    every: set[str] = set()
    for cmd in [cli, *cli.commands.values()]:
        every |= _spellings(cmd)[0]
    extra = sorted(_table_flags((COMMANDS / "common.md").read_text()) - every)
    assert not extra, f"common.md names flags no command takes: {extra}"


def test_group_options_are_documented() -> None:
    text = (COMMANDS / "README.md").read_text() + (COMMANDS / "common.md").read_text()
    opts, _ = _spellings(cli)
    missing = sorted(opts - _flags_in(text))
    assert not missing, missing


def test_relative_links_resolve() -> None:
    pages = [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]
    broken = []
    for page in pages:
        for target in LINK.findall(page.read_text()):
            if re.match(r"^[a-z]+:", target):
                continue  # http(s), mailto
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
                continue
            if anchor and dest.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", dest.read_text(), flags=re.M)
                if anchor not in {_slug(h) for h in headings}:
                    broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, broken
