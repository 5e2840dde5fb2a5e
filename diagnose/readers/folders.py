"""The files directly in a folder that a reader may claim."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import LogError


def files_in(folder: Path, wanted: Callable[[Path], bool]) -> list[Path]:
    """The files directly in ``folder`` whose path is ``wanted``, by name; none when the folder cannot be listed."""
    try:
        return sorted(p for p in folder.iterdir() if wanted(p) and p.is_file())
    except OSError:
        return []


def one_log(folder: Path, files: list[Path], what: str) -> Path:
    """The one log of ``files`` (a reader's claimed files in ``folder``); several are an error, not a choice."""
    if len(files) > 1:
        names = ", ".join(p.name for p in files)
        raise LogError(folder, f"holds {len(files)} {what} ({names}): put each run's log in a folder of its own")
    return files[0]
