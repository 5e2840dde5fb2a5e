"""The files directly in a folder that a reader may claim."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from ..errors import LogError


# A folder whose listing ``files_in`` answers from, and that listing (``listed``).
_listed: tuple[Path, list[os.DirEntry]] | None = None


@contextlib.contextmanager
def listed(folder: Path, entries: list[os.DirEntry]):
    """Within it, ``files_in(folder, ...)`` answers from ``entries``: ``discover`` lists a folder that no run's
    ``run.json`` claims once for all the readers' sniffs (three of them list it: 1,000 study folders, ~40 ms)."""
    global _listed
    _listed = (folder, entries)
    try:
        yield
    finally:
        _listed = None


def files_in(folder: Path, wanted: Callable[[str], bool]) -> list[Path]:
    """The files directly in ``folder`` whose name is ``wanted``, by name; none when the folder cannot be listed.

    Every folder of a log root is listed so on every run: a Path is made only for a wanted file.
    """
    # is_file first: the folder's own type field answers it, and a folder of runs holds no file to ask ``wanted`` about
    try:
        if _listed is not None and _listed[0] is folder:
            names = [entry.name for entry in _listed[1] if entry.is_file() and wanted(entry.name)]
        else:
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
