"""A cache of parsed runs and their run-level findings, keyed by the run's files.

Re-running a report on a log root where a few runs changed re-reads only
those. An entry is keyed by the reader, the folder, its study and the size and
mtime of every file under the folder (subfolders too: a Hugging Face run's new
``checkpoint-N/trainer_state.json`` is a change), so a changed file is a miss; an entry that cannot be loaded
(corrupt, truncated, written by another version) is dropped and the run read
again. Runs still ``running`` are never cached: their status depends on the
clock. An entry is one file, replaced whole by rename: the run's two tables
as Arrow IPC streams (never pickles, read only when something asks for them),
then its JSON: what the run is, and what the checks found in it with the run's
instability events (``diagnose.instability``), so the study checks of a warm
re-run need not find them again. Findings of other check settings go in files
beside it.

The study-level work (``analyze.StudyWork``: the study checks' findings, the
study summary) is cached too, by a digest of its runs' keys and every check's
settings: a warm report whose studies did not change reads no run's tables.
Every key holds ``code_version()``, so an edited checkout never serves what
older code found.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import json
import os
import secrets
import struct
from pathlib import Path

import numpy as np

from . import __version__, instability
from .analyze import StudyWork
from .errors import LogError
from .findings import Finding, to_jsonable
from .instability import InstabilityConfig, InstabilityEvent
from .model import Run, Study
from .readers import Unreadable, read_bytes, read_run

CACHE_ENV = "DIAGNOSE_CACHE_DIR"


def default_directory() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "diagnose"


# A run in one of these states may read differently later with the same files: never cached.
UNCACHED = ("running", "interrupted")

# An entry's file is the steps table as an Arrow IPC stream (its schema, then one record batch), the evals
# table's, the JSON, then where each of these three ends and the layout's tag: an entry of another layout is
# damaged, never misread. One file, not a folder of four: storing a 1,000-step run took 1.3-2.1 CPU ms, then
# 0.8-0.9 (a 100k-step one 2.6-2.9 -> 1.9-2.1), and a warm run opens one file a run instead of two.
_TRAILER = struct.Struct("<3Q8s")
_LAYOUT = b"dgnrun/2"
_TABLES = ("steps", "evals")
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_TAIL = 4096
# a batch this large is written from its columns' memory, not copied first: 3 MB copied into fresh memory cost
# 1-2.5 CPU ms of page faults; below it a copy costs less than a stream writer (5 us a 1,000-row table, not 20)
_COPIED_BELOW = 1 << 20
# a smaller table is read, not mapped: a map and its unmap cost more than copying ~256 kB (1,000 steps: ~40 us)
_MAPPED_FROM = 1 << 18
_IOV_MAX = os.sysconf("SC_IOV_MAX")  # buffers a system call writes at most


# the command line parses options into checks' settings and key names, which are keyed themselves
_NOT_ANALYSIS = ("render/", "probe/", "cli.py")


@functools.cache
def code_version() -> str:
    """What found a cached result: the version and the analysis code of this package."""
    return analysis_fingerprint(Path(__file__).parent)


def analysis_fingerprint(package: Path) -> str:
    """The version and the size and mtime of every file of ``package`` that finds a cached result.

    Renderers, the probe and the command line find none (figures carry a version of their own),
    so editing them keeps the cache.
    """
    files = sorted(f for f in _fingerprints(package)
                   if "__pycache__/" not in f[0] and not f[0].startswith(_NOT_ANALYSIS))
    return hashlib.sha256(json.dumps([__version__, files]).encode()).hexdigest()[:16]


def checks_key(checks) -> str:
    """The settings of ``checks`` (``Check`` objects) and the code that runs them."""
    return hashlib.sha256(repr([code_version(), [(c.id, c.config) for c in checks]]).encode()).hexdigest()[:16]


class RunCache:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._entries = os.path.join(self.directory, "")  # each entry's path: a str join, not os.path.join's

    def key(self, folder: Path, reader_name: str, root: str) -> str:
        """The entry of ``folder`` as ``reader_name`` reads it, now, below log root ``root`` (its real path).

        Folder and root are what a run's default study is made of (the root's
        real name for runs at its top), so the study needs no key of its own.
        """
        files = sorted(_fingerprints(folder))
        identity = json.dumps([code_version(), reader_name, root, os.path.abspath(folder), files])
        return hashlib.sha256(identity.encode()).hexdigest()

    def load(self, key: str, checks_key: str, source: tuple) -> tuple[Run, list[Finding], list] | None:
        """The run of entry ``key`` (its tables read on first use), with its findings when ``checks_key`` ran on it.

        ``source`` is ``(root, folder, reader module name, keys)``: where the run
        is read again from should its tables turn out damaged when first used.
        """
        entry = self._entry(key)  # a str: ten thousand Path objects a warm run cost more than the JSON
        try:
            meta = _read_meta(entry)
            run = Run.with_tables_later(
                functools.partial(_read_table, entry, source),
                name=meta["name"],
                study=meta["study"],
                # the folder's own Path when it is the source, as it is for every reader (10,000 Paths cost 0.1 s)
                source=source[1] if meta["source"] == str(source[1]) else Path(meta["source"]),
                role=meta["role"],
                config=meta["config"],
                status=meta["status"],
                format=meta["format"],
                notes=meta["notes"],
                nan_steps={k: np.asarray(v, dtype=np.int64) for k, v in meta["nan_steps"].items()},
                sources=meta["sources"],
            )
            # what the findings document says of the tables, and the cached properties it reads
            run.__dict__.update(facts=meta["facts"], lr=meta["lr"], momentum=meta["momentum"])
            checked = meta["checks"].get(checks_key)
            if checked is None:
                try:
                    checked = _read_json(f"{entry}.checks-{checks_key}.json")
                except FileNotFoundError:
                    return run, None, None
            instability.remember(run, {
                InstabilityConfig(**config): [InstabilityEvent(**event) for event in events]
                for config, events in checked["instability"]
            })
            return run, [Finding.from_dict(f) for f in checked["findings"]], [tuple(s) for s in checked["skipped"]]
        except OSError:  # not cached, or a cache that cannot be read
            return None
        except Exception:  # any damage: forget the entry, read the run again
            _remove(entry)
            return None

    def store(self, key: str, run: Run, checks_key: str, findings: list[Finding], skipped: list) -> bool:
        """Keep ``run`` and what ``checks_key`` found in it; False when it is not kept (its tables are nowhere else)."""
        if run.status in UNCACHED:
            return False
        entry = self._entry(key)
        checked = {
            "findings": [_finding_record(f) for f in findings],
            "skipped": skipped,
            # inf is a real value of an event (a loss gone non-finite): Python's JSON keeps it
            "instability": [
                [dataclasses.asdict(config), [event.to_dict() for event in events]]
                for config, events in instability.memoised(run).items()
            ],
        }
        try:
            if os.path.isfile(entry):
                _put(f"{entry}.checks-{checks_key}.json", [json.dumps(checked).encode()])
            else:
                self._write_run(entry, run, {checks_key: checked})
        except OSError:
            return False  # a cache that cannot be written costs speed, never the report
        return True

    def tables_later(self, key: str, run: Run, source: tuple) -> None:
        """Drop ``run``'s tables (stored under ``key``): read from the entry again when next used.

        A worker process hands runs back this way, so that the main process is
        not sent tables that it may never need (a cached study, no figures).
        ``source`` is as for ``load``.
        """
        run.facts, run.lr, run.momentum  # noqa: B018 - what the document says of the tables, found while they are here
        run.__dict__.pop("steps", None)
        run.__dict__.pop("evals", None)
        run.__dict__["_load_table"] = functools.partial(_read_table, self._entry(key), source)

    def _write_run(self, entry: str, run: Run, checks: dict[str, dict]) -> None:
        """The entry of ``run``, with what ``checks`` (checks key -> record) found in it, put in place at once."""
        meta = {
            "name": run.name,
            "study": run.study,
            "source": str(run.source),
            "role": run.role,
            "config": to_jsonable(run.config),
            "status": run.status,
            "format": run.format,
            "notes": run.notes,
            "nan_steps": {k: v.tolist() for k, v in run.nan_steps.items()},
            "sources": run.sources,
            "facts": run.facts,
            "lr": run.lr,
            "momentum": run.momentum,
            "checks": checks,
        }
        # IPC streams, not IPC files, put in place by one system call: a file writer cost ~0.1 ms a small table,
        # and it wrote into the file one system call a buffer. Uncompressed (IPC's default): 1.8x the bytes of
        # lz4, but a 100k-step table writes in 0.9 ms instead of 12.6 and reads in 0.6 ms instead of 1.9 (CPU).
        parts, ends = [], []
        for section in (_ipc_stream(_record_batch(run.steps)), _ipc_stream(_record_batch(run.evals)),
                        [json.dumps(meta).encode()]):
            parts += section
            ends.append(sum(memoryview(part).nbytes for part in parts))
        _put(entry, [*parts, _TRAILER.pack(*ends, _LAYOUT)])

    def _entry(self, key: str) -> str:
        return f"{self._entries}{key[:2]}{os.sep}{key}.run"


def _record_batch(frame):
    """``frame`` as one Arrow record batch that reads back as the same frame (``_read_table``).

    Number columns go over as they are, and pandas' own Arrow strings (the ``str`` of an eval's split)
    as the Arrow array they already are: pandas' converter costs ~0.1 ms a column and inspects every
    string, most of a small run's write (1,000-step runs: 0.6 -> 0.3 ms a run). The columns are taken
    by position (``frames.column``), not as Series: a Series a column cost ~15 us, half of a small
    table's conversion. A table with other columns (object ones) keeps pandas' conversion, whose
    metadata gives back their dtype.
    """
    import pyarrow as pa

    from .frames import column  # pandas: a frame is here already

    names = frame.columns.tolist()
    arrays = []
    for i, name in enumerate(names):
        values = column(frame, i)
        dtype = values.dtype
        numbers = isinstance(dtype, np.dtype) and dtype.kind in "iuf"
        strings = getattr(dtype, "storage", None) == "pyarrow" and dtype.name == "str"  # its Arrow data: no copy
        if not (isinstance(name, str) and (numbers or strings)):
            break
        array = pa.array(values)
        # pandas' strings may be in pieces (a concatenation's): a batch's column is one array
        arrays.append(array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array)
    if len(arrays) == len(names):
        return pa.RecordBatch.from_arrays(arrays, names=names)
    # one thread: runs are converted in parallel already, and a pool costs ~3 ms a small table
    return pa.RecordBatch.from_pandas(frame, preserve_index=False, nthreads=1)


def _ipc_stream(batch) -> list:
    """``batch`` as an Arrow IPC stream, its schema then it: bytes-like parts to write one after the other."""
    import pyarrow as pa

    if batch.nbytes < _COPIED_BELOW:
        return [batch.schema.serialize(), batch.serialize()]
    parts = _Parts()
    with pa.ipc.new_stream(pa.PythonFile(parts, mode="w"), batch.schema) as writer:
        writer.write_batch(batch)
    return parts


class _Parts(list):
    """A file that keeps what is written to it as it comes: the columns' own buffers, uncopied."""

    closed = False

    def write(self, data) -> int:
        self.append(data)
        return memoryview(data).nbytes

    def flush(self) -> None:
        pass


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


def _read_table(entry: str, source: tuple, name: str):
    """A cached run's ``steps`` or ``evals``; damaged since the entry was loaded: from the run's own files again."""
    import pyarrow as pa  # only a run whose tables are used pays for it

    from .frames import from_arrow  # pandas too

    try:
        handle = os.open(entry, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(handle).st_size
            ends = _ends(entry, size, os.pread(handle, _TRAILER.size, max(0, size - _TRAILER.size)))
            start, end = [0, *ends][_TABLES.index(name):][:2]
            if end - start < _MAPPED_FROM:
                data = pa.py_buffer(os.pread(handle, end - start, start))
            else:
                # Mapped, one block per column as the readers build tables: the columns are the file's pages, not
                # copies into fresh memory (~6 ms a 100k-step table, mostly page faults). Entries are replaced by
                # rename, never rewritten in place, so a mapped file does not shrink under its reader.
                data = pa.memory_map(entry).read_buffer().slice(start, end - start)
        finally:
            os.close(handle)
        return from_arrow(pa.ipc.open_stream(data).read_next_batch())
    except Exception:
        _remove(entry)
    root, folder, reader_name, keys = source
    run = read_run(root, folder, importlib.import_module(reader_name), keys)
    if isinstance(run, Unreadable):
        raise LogError(Path(run.path), f"changed while being analyzed: {run.error}")
    return getattr(run, name)


def _read_meta(entry: str) -> dict:
    """The JSON of an entry: what its run is, and what the checks found in it.

    Descriptor calls, and the file's last 4 kB in one read, which mostly holds the JSON: a warm run reads
    ten thousand of them (36 -> 25 us CPU an entry, a file object and its seeks cost more than the JSON).
    """
    handle = os.open(entry, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(handle).st_size
        tail_start = max(0, size - _TAIL)
        tail = os.pread(handle, size - tail_start, tail_start)
        ends = _ends(entry, size, tail[-_TRAILER.size:])
        if ends[-2] >= tail_start:
            text = tail[ends[-2] - tail_start:ends[-1] - tail_start]
        else:
            text = os.pread(handle, ends[-1] - ends[-2], ends[-2])
    finally:
        os.close(handle)
    return json.loads(text.decode())  # bytes would be sniffed for their encoding first


def _ends(entry: str, size: int, trailer: bytes) -> list[int]:
    """Where the steps stream, the evals stream and the JSON of an entry of ``size`` bytes end, from its trailer."""
    if len(trailer) != _TRAILER.size:
        raise ValueError(f"{entry}: damaged")  # not OSError, which says the cache cannot be read
    *ends, tag = _TRAILER.unpack(trailer)
    if tag != _LAYOUT or ends != sorted(ends) or ends[-1] != size - _TRAILER.size:
        raise ValueError(f"{entry}: damaged")
    return ends


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class StudyCache:
    """``analyze.StudyWork`` of each study, by a digest of its runs' cache keys and every check's settings."""

    def __init__(self, directory: Path, run_keys: dict[int, str], checks):
        self.directory = Path(directory) / "studies"
        self.run_keys = run_keys  # id(run) -> its RunCache key
        self.checks_key = checks_key(checks)

    def digest(self, study: Study) -> str | None:
        """None when a run of the study is not cached (still running, say): its work is done again each time."""
        keys = [self.run_keys.get(id(run)) for run in study.runs]
        if None in keys or any(run.status in UNCACHED for run in study.runs):
            return None
        runs = sorted([run.name, key] for run, key in zip(study.runs, keys))
        identity = json.dumps([self.checks_key, study.name, runs])
        return hashlib.sha256(identity.encode()).hexdigest()

    def load(self, digest: str) -> StudyWork | None:
        path = self._path(digest)
        try:
            record = _read_json(path)
            return StudyWork(
                findings=[Finding.from_dict(f) for f in record["findings"]],
                skipped=[tuple(s) for s in record["skipped"]],
                summary=record["summary"],
                above_best_lr=record["above_best_lr"],
                cells=record["cells"],
            )
        except OSError:
            return None
        except Exception:  # any damage: forget it, check the study again
            _remove(path)
            return None

    def store(self, digest: str, work: StudyWork) -> None:
        record = {
            "findings": [_finding_record(f) for f in work.findings],
            "skipped": work.skipped,
            "summary": _plain(work.summary),
            "above_best_lr": work.above_best_lr,
            "cells": work.cells,
        }
        try:
            _put(self._path(digest), [json.dumps(record).encode()])
        except OSError:
            return  # a cache that cannot be written costs speed, never the report

    def _path(self, digest: str) -> str:
        return os.path.join(self.directory, digest[:2], f"{digest}.json")


def _finding_record(finding: Finding) -> dict:
    """``Finding.to_dict`` with the evidence as the check made it: inf stays a number, not ``"inf"``."""
    return {**finding.to_dict(), "evidence": _plain(finding.evidence)}


def _plain(value):
    """JSON types as ``to_jsonable`` makes them, but non-finite floats kept (Python's JSON writes and reads them)."""
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    return to_jsonable(value)


def _fingerprints(folder, prefix: str = ""):
    """(relative path, size, mtime) of every file under ``folder``: whatever a reader may read."""
    try:
        entries = list(os.scandir(folder))
    except OSError:  # vanished while we walked: the next key sees the change
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from _fingerprints(entry.path, f"{prefix}{entry.name}/")
            elif not entry.is_symlink() or os.path.isfile(entry.path):
                stat = entry.stat()
                yield f"{prefix}{entry.name}", stat.st_size, stat.st_mtime_ns
        except OSError:
            continue


def _read_json(path: str):
    return json.loads(read_bytes(path).decode())  # bytes would be sniffed for their encoding first


def _put(path: str, parts: list) -> None:
    """The file ``path`` made of ``parts`` (bytes-like), put in place whole by rename; its folder made if missing."""
    staging = os.path.join(os.path.dirname(path), f".tmp-{secrets.token_hex(8)}")
    try:
        handle = os.open(staging, _CREATE, 0o666)
    except FileNotFoundError:  # a folder is made once, not asked for at each file
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handle = os.open(staging, _CREATE, 0o666)
    try:
        try:
            _write_all(handle, [memoryview(part).cast("B") for part in parts])
        finally:
            os.close(handle)
        os.replace(staging, path)
    except BaseException:
        _remove(staging)
        raise
