"""The one error type a reader raises: a file, a line and what is wrong."""

from __future__ import annotations

from pathlib import Path


class LogError(Exception):
    """A log file that cannot be read, said in one line: ``path:line: message``."""

    def __init__(self, path: Path | str, message: str, line: int | None = None):
        self.path = Path(path)
        self.line = line
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return f"{where}: {self.message}"
