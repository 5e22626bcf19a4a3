"""Where a command's output goes: the report to stdout, progress to stderr while a TTY is
attached, warnings to stderr always. The CLI builds one; the layers below only call it."""

from __future__ import annotations

import sys
from collections.abc import Callable


class UI:
    def __init__(
        self,
        out: Callable[[str], None] | None = None,
        err: Callable[[str], None] | None = None,
        tty: bool | None = None,
    ) -> None:
        self._out = out or sys.stdout.write
        self._err = err or (lambda s: sys.stderr.write(s + "\n"))
        self.tty = sys.stderr.isatty() if tty is None else tty

    def out(self, text: str) -> None:
        """The report (stdout)."""
        self._out(text)

    def progress(self, text: str) -> None:
        """Progress lines, only while stderr is a terminal."""
        if self.tty:
            self._err(text)

    def warn(self, text: str) -> None:
        """Something the user must know whatever the terminal: always on stderr."""
        self._err(f"Warning: {text}")

    def info(self, text: str) -> None:
        """A one-line notice on stderr (e.g. which mode was chosen)."""
        self._err(text)
