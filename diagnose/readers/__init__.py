"""Find every run under a log root and read it, whatever wrote it.

Each reader module has ``sniff(folder) -> bool`` (does this folder hold a log
of mine?) and ``read(folder, study) -> Run``, raising ``LogError``. The first
reader that claims a folder reads it, and the walk does not go below it (so the
``checkpoint-N`` copies of a Trainer's state, or the several event files of
one TensorBoard run, are one run). Readers of other tools' logs also take
``keys``: a ``KeyMap`` naming unusual keys (``--loss-key`` ...).

``sniff`` runs on every folder of every run, ``read`` only on the runs the
cache does not hold: a reader module imports pandas, pyarrow and the table
code (``table``, ``records``) in the functions that build tables, never at its
top, so that a re-run the cache serves imports none of them
(``tests/test_warm_imports.py``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LogError
from ..model import Run
from . import csvlog, hf, lightning, rundir, tensorboard, textlog
from .keys import DEFAULT_KEYS, KeyMap

# Sniffing order: the native format first (``visit`` asks it before listing a folder), then the most specific file
# names.
READERS = (rundir, hf, lightning, tensorboard, csvlog, textlog)


@dataclass
class Unreadable:
    path: str
    error: str

    def to_dict(self) -> dict:
        return {"path": self.path, "error": self.error}


@dataclass
class LogRoot:
    path: Path
    runs: list[Run] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)


def read_bytes(path) -> bytes:
    """A whole file, without a Python file object (~5 us of a small file's ~11): logs and cache entries are read
    by the thousand."""
    handle = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return _read_all(handle, os.fstat(handle).st_size)
    finally:
        os.close(handle)


def read_if_file(path: Path) -> bytes | None:
    """``read_bytes(path)`` where ``path.is_file()``, else None, without asking first (a stat call a file)."""
    try:
        handle = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)  # a FIFO is not waited for
    except OSError:
        if path.is_file():  # there, but not to be read: why
            raise
        return None
    try:
        status = os.fstat(handle)
        return _read_all(handle, status.st_size) if stat.S_ISREG(status.st_mode) else None  # a folder, a FIFO...
    finally:
        os.close(handle)


def _read_all(handle: int, size: int) -> bytes:
    size = max(size, 1 << 16)  # all at once, unless the file grows meanwhile
    parts = []
    while part := os.read(handle, size):
        parts.append(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def discover(root: Path, keys: KeyMap = DEFAULT_KEYS) -> list[tuple[Path, object]]:
    """Every folder at any depth below ``root`` (itself included) that a reader claims.

    ``keys`` lets a CSV or text log whose loss has an unusual name be found at all.
    Folders are visited as ``os.walk`` would (by name, depth first, hidden ones and
    links to folders left out), but the walk does not go below a folder a reader claims.
    """
    return walk([(Path(root), None)], keys)


def walk(start: list[tuple[Path, object | None]], keys: KeyMap = DEFAULT_KEYS) -> list[tuple[Path, object]]:
    """``start``'s folders with their readers, in order, each folder without one (None) replaced by ``discover``
    of it."""
    found = []
    pending = start[::-1]
    while pending:
        folder, reader = pending.pop()
        if reader is None:
            claimed = visit(folder, keys)
            if isinstance(claimed, list):
                pending.extend([(sub, None) for sub in reversed(claimed)])
                continue
            reader = claimed
        found.append((folder, reader))
    return found


def frontier(root: Path, keys: KeyMap = DEFAULT_KEYS, wanted: int = 1) -> list[tuple[Path, object | None]]:
    """The start of ``discover(root)`` breadth first: folders below ``root`` (in ``discover``'s order) each with its
    reader, or None where it is still to be walked, once ``wanted`` are or none is. ``walk`` of it is ``discover``."""
    found: list[tuple[Path, object | None]] = [(Path(root), None)]
    while 0 < sum(reader is None for _, reader in found) < wanted:
        level = []
        for folder, reader in found:
            claimed = visit(folder, keys) if reader is None else reader
            if isinstance(claimed, list):
                level.extend([(sub, None) for sub in claimed])
            else:
                level.append((folder, claimed))
        found = level
    return found


def visit(folder: Path, keys: KeyMap = DEFAULT_KEYS) -> object | list[Path]:
    """The reader that claims ``folder``, else its subfolders by name (hidden ones and links to folders left out).

    A run's folder is claimed by the first reader's one stat (the native run file). Any other folder is listed
    once: the other readers are asked only when it holds a file or a ``checkpoint-N`` entry, for none claims a
    folder but by its files or those of its checkpoints (a folder of studies: one listing, not six; 10,000 runs
    in 1,000 studies are found with 0.16-0.19 s of CPU, not 0.32-0.37 s).
    """
    native = READERS[0]
    if native.sniff(folder):
        return native
    try:
        with os.scandir(folder) as listed:
            entries = list(listed)
    except OSError:  # vanished or unreadable: as os.walk, not an error, yet its files may still be readable
        entries = None
    if entries is None or any(map(_may_be_claimed, entries)):
        reader = next((r for r in READERS[1:] if _sniff(r, folder, keys)), None)
        if reader is not None:
            return reader
    names = [e.name for e in entries or () if not e.name.startswith(".") and _is_real_folder(e)]
    names.sort()
    return [folder / name for name in names]


def _may_be_claimed(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file() or hf.CHECKPOINT.fullmatch(entry.name) is not None
    except OSError:
        return True


def _is_real_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _sniff(reader, folder: Path, keys: KeyMap) -> bool:
    return reader.sniff(folder, keys) if reader in (csvlog, textlog) else reader.sniff(folder)


def default_study(root: Path, folder: Path) -> str:
    """The parent folder's path relative to the root; the root's own name at the top."""
    top, parts = root.parts, folder.parts  # compared as relative_to compares them, without its new paths (~5 us)
    if len(parts) > len(top) + 1 and parts[:len(top)] == top:
        return "/".join(parts[len(top):-1])
    if folder != root:
        folder.parent.relative_to(root)  # ValueError where the folder is not below the root
    return root.resolve().name


def read_run(root: Path, folder: Path, reader, keys: KeyMap = DEFAULT_KEYS) -> Run | Unreadable:
    """One run, or why it cannot be read: never an exception."""
    try:
        if reader is rundir:
            return reader.read(folder, default_study(root, folder))
        return reader.read(folder, default_study(root, folder), keys=keys)
    except LogError as error:
        return Unreadable(str(error.path), str(error))
    except OSError as error:
        return Unreadable(str(folder), f"{folder}: {error.strerror or error}")
    except Exception as error:  # a reader bug must cost one run, not the report
        return Unreadable(str(folder), f"{folder}: could not be read ({type(error).__name__}: {error}); please report this")


def read_root(
    root: Path,
    on_progress: Callable[[int, int], None] | None = None,
    keys: KeyMap = DEFAULT_KEYS,
) -> LogRoot:
    """Read every run below ``root``; a run that cannot be read is listed, never fatal.

    ``keys`` names the logged keys that hold the loss, valid loss, grad norm,
    lr, momentum or step where the readers do not know the names.
    """
    root = check_root(root)
    result = LogRoot(path=root)
    folders = discover(root, keys)
    for done, (folder, reader) in enumerate(folders, start=1):
        outcome = read_run(root, folder, reader, keys)
        (result.unreadable if isinstance(outcome, Unreadable) else result.runs).append(outcome)
        if on_progress is not None:
            on_progress(done, len(folders))
    disambiguate(root, result.runs)
    return result


def check_root(root: Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise LogError(root, "not a folder: give the folder that holds your runs")
    return root


def disambiguate(root: Path, runs: list[Run]) -> list[Run]:
    """Two runs with the same study and name (e.g. copied folders) get their paths as names; returns those."""
    seen: dict[str, list[Run]] = {}
    for run in runs:
        seen.setdefault(run.key, []).append(run)
    for same in seen.values():
        if len(same) > 1:
            for run in same:
                run.notes.append(f"another run is also named {run.name!r} in study {run.study!r}: named by its folder")
                run.name = run.source.relative_to(root).as_posix()
    return [run for same in seen.values() if len(same) > 1 for run in same]
