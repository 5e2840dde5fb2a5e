"""Files of the caches (runs, studies, figures) put in place whole, and what a killed process left removed.

A file is written in a staging folder, then renamed into place: a reader sees
the old file or the new one, never half of one, and what a process killed
between the two left is in one folder to look in. A cache's record of a log
root says which root in its first line (``first_line``), read without the rest
of the record, so that a command can tell cheaply which roots are gone.
"""

from __future__ import annotations

import os
import secrets
import time
import zlib
from collections.abc import Iterator

ABANDONED = 3600  # seconds: a staging file this old was left by a killed process

# Bytes ``first_line`` reads at first, then at most: a root's JSON (6 characters a byte at worst) of a path of
# 4,096 bytes fits in the second; a longer line is read as none, which removes nothing.
_LINE, _LONGEST_LINE = 4096, 1 << 16
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_IOV_MAX = os.sysconf("SC_IOV_MAX")  # buffers a system call writes at most


def put(path: str | os.PathLike, parts: list, staging: str | os.PathLike) -> None:
    """The file ``path`` made of ``parts`` (bytes-like), put in place whole by rename; its folder made if missing.

    Written in folder ``staging`` first: one folder to look in for what a killed process left there.
    """
    staging = os.path.join(staging, f".tmp-{secrets.token_hex(8)}")
    try:
        handle = os.open(staging, _CREATE, 0o666)
    except FileNotFoundError:  # a folder is made once, not asked for at each file
        os.makedirs(os.path.dirname(staging), exist_ok=True)
        handle = os.open(staging, _CREATE, 0o666)
    try:
        try:
            _write_all(handle, [memoryview(part).cast("B") for part in parts])
        finally:
            os.close(handle)
        try:
            os.replace(staging, path)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.replace(staging, path)
    except BaseException:
        remove(staging)
        raise


def remove(path: str | os.PathLike) -> None:
    """Remove a file if it is there and can be removed: a cache that cannot be tidied costs disk, never a report."""
    try:
        os.unlink(path)
    except OSError:
        pass


def remove_abandoned(staging: str | os.PathLike) -> None:
    """Remove the files of folder ``staging`` that a killed process left (``ABANDONED`` seconds old)."""
    now = time.time()
    try:
        with os.scandir(staging) as found:
            for entry in found:
                if entry.stat(follow_symlinks=False).st_mtime < now - ABANDONED:
                    remove(entry.path)
    except OSError:
        pass


def first_line(path: str | os.PathLike) -> bytes | None:
    """The first line of file ``path``, without its newline and the rest of the file (a root's record of 10,000
    runs is ~9 MB); None when it cannot be read or holds no newline in its first ``_LONGEST_LINE`` bytes."""
    try:
        handle = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.pread(handle, _LINE, 0)
        end = data.find(b"\n")
        if end < 0 and len(data) == _LINE:
            data = os.pread(handle, _LONGEST_LINE, 0)
            end = data.find(b"\n")
    except OSError:
        return None
    finally:
        os.close(handle)
    return data[:end] if end >= 0 else None


def records(folder: str | os.PathLike, tag: str, upgrading: bool) -> Iterator[tuple[str, str, bytes]]:
    """Each file of ``folder`` (a cache's records of log roots) whose first line begins with ``tag``: its path, name
    and that line. ``upgrading``: any other file (an older layout's record) is removed; else it is left alone."""
    try:
        with os.scandir(folder) as found:
            listed = [(entry.path, entry.name) for entry in found]
    except OSError:
        return
    for path, name in listed:
        line = first_line(path)
        if line is not None and line.startswith(f"{tag} ".encode()):
            yield path, name, line
        elif upgrading:
            remove(path)


def sealed(parts: list) -> list:
    """``parts`` (bytes-like) after a line holding a CRC-32 of them: what a cache shows as it is, without computing it
    again, so that a changed letter that leaves valid JSON is damage too (``unsealed``)."""
    checksum = 0
    for part in parts:
        checksum = zlib.crc32(part, checksum)
    return [b"%08x\n" % checksum, *parts]


def unsealed(data: bytes) -> bytes | None:
    """What ``sealed`` put after its line, from a file's ``data``; None when the checksum does not hold."""
    if data[8:9] != b"\n" or data[:8] != b"%08x" % zlib.crc32(memoryview(data)[9:]):
        return None
    return data[9:]


def _write_all(handle: int, views: list[memoryview]) -> None:
    """Write ``views`` (of bytes) to file descriptor ``handle``: one system call unless the kernel takes less."""
    views = list(views)
    first = 0
    while first < len(views):
        written = os.writev(handle, views[first:first + _IOV_MAX])
        while first < len(views) and written >= views[first].nbytes:
            written -= views[first].nbytes
            first += 1
        if written:
            views[first] = views[first][written:]
