"""The files directly in a folder that a reader may claim."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..errors import LogError


def files_in(folder: Path, wanted: Callable[[str], bool]) -> list[Path]:
    """The files directly in ``folder`` whose name is ``wanted``, by name; none when the folder cannot be listed.

    Every folder of a log root is listed so on every run: a Path is made only for a wanted file.
    """
    # is_file first: the folder's own type field answers it, and a folder of runs holds no file to ask ``wanted`` about
    try:
        with os.scandir(folder) as entries:
            names = [entry.name for entry in entries if entry.is_file() and wanted(entry.name)]
    except OSError:
        return []
    return [folder / name for name in sorted(names)]


def one_log(folder: Path, files: list[Path], what: str) -> Path:
    """The one log of ``files`` (a reader's claimed files in ``folder``); several are an error, not a choice."""
    if len(files) > 1:
        names = ", ".join(p.name for p in files)
        raise LogError(folder, f"holds {len(files)} {what} ({names}): put each run's log in a folder of its own")
    return files[0]
