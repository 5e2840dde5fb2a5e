"""A cache of parsed runs and their run-level findings, keyed by the run's files.

Re-running a report on a log root where a few runs changed re-reads only
those. A run's key is its place (the reader, the root, the folder) and its
version: ``code_version()`` and the size and mtime of every file under the
folder (subfolders too: a Hugging Face run's new
``checkpoint-N/trainer_state.json`` is a change). A run has one entry, named
by its place and holding its version: an entry of another version is a miss,
and storing the new version replaces it, so the cache grows with the runs, not
with their re-runs or with edits of the code. An entry that cannot be loaded
(corrupt, truncated, of another layout) is dropped, with its folder of other
settings' findings, and the run read again.
Runs still ``running`` are never cached: their status depends on the clock.
Entries of runs deleted from a log root are removed by the next command on
it that gives its runs' keys to ``forget_absent``. The same record of the root
keeps each run's key with its entry's JSON, so that a re-run takes the runs
whose key is unchanged from one file instead of opening every entry. A log
root deleted whole is forgotten by the next command on any root: its record
says its root in its first line, and a root no longer there loses its entries,
its studies' files and its record (``RunCache._forget_gone_roots``).
An entry is one file, replaced whole by rename: the run's two tables as Arrow
IPC streams (never pickles, read only when something asks for them, each under
a checksum), then its JSON (under another): what the run is, and what the
checks found in it with the run's instability events (``diagnose.instability``),
so the study checks of a warm re-run need not find them again. Findings of
other check settings go in a folder beside it, emptied when a new version of
the run is stored.

The study-level work (``analyze.StudyWork``: the study checks' findings, the
study summary) is cached too, one file a study in a folder a root, valid for a
digest of its runs' keys: a warm report whose studies did not change reads no
run's tables. The files of studies no longer in the root go at the end of each
command on it (``StudyCache.forget_absent``).

Files are put in place by rename from a staging folder; the first key asked of
a ``RunCache`` removes staging files a killed process left, and files of older
layouts once (a marker file names the layout). Two processes may share the
cache: a file removed or replaced under a reader is a miss, never a wrong run.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import json
import mmap
import os
import re
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import xxhash

from . import __version__, files, instability
from .analyze import StudyWork
from .errors import LogError
from .findings import Finding, to_jsonable
from .instability import InstabilityConfig, InstabilityEvent
from .model import Run, Study, once_per_object
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
# table's, the JSON, then where each of these three ends, an XXH3-64 of each table's stream and a CRC-32 of the
# JSON (what a warm command shows without checking the run again: a changed letter must not pass, nor a changed
# bit of a loss), the layout's tag and the run's version (its key's): an entry of another layout is damaged, never
# misread, and one of another version is a miss. One file, not a folder of four: storing a 1,000-step run took
# 1.3-2.1 CPU ms, then 0.8-0.9 (a 100k-step one 2.6-2.9 -> 1.9-2.1), and a warm run opens one file a run instead
# of two. XXH3, not CRC-32, for the tables: ~0.1 ms a 100k-step table (3.2 MB) instead of ~0.9, less than
# reading it.
_TRAILER = struct.Struct("<3Q2QI8s32s")
_LAYOUT = b"dgnrun/6"
_TABLES = ("steps", "evals")
_TAIL = 4096
# a batch this large is written from its columns' memory, not copied first: 3 MB copied into fresh memory cost
# 1-2.5 CPU ms of page faults; below it a copy costs less than a stream writer (5 us a 1,000-row table, not 20)
_COPIED_BELOW = 1 << 20
# a smaller table is read, not mapped: a map and its unmap cost more than copying ~256 kB (1,000 steps: ~40 us)
_MAPPED_FROM = 1 << 18
# The cache's JSON: what it writes is made here, trees without cycles, so the check for them is skipped, and no
# spaces (a run's JSON: 28 -> 15 us CPU to write).
_dumps = json.JSONEncoder(check_circular=False, separators=(",", ":")).encode

# The layout of the cache folder, in its marker file: another (or none) means files of older layouts may be there.
# A new layout (or new names of entries) takes a new marker, and ``_OLD`` the names this one leaves.
_MARKER, _FOLDER_LAYOUT = "layout", "diagnose cache 4\n"
_STAGING = "staging"  # every file is written here first, then renamed into place
_ROOTS = "roots"  # a record a log root of the runs a command saw there (``RunCache.forget_absent``)
_STUDIES = "studies"  # a folder a log root (its part of the runs' keys) of its studies' files (``StudyCache``)
# A root's record: this tag, a CRC-32 of the rest and the JSON of its root and key names' variant, which the record's
# name is a hash of (a damaged line names no root: ``_recorded_root``); the runs' keys on one line; then a line a
# run, the JSON of its entry if known. The checksum: a damaged record, or a part of one, is never read as runs. Keys
# and texts apart, each split at once: reading 10,000 runs' record took ~45 ms of CPU as a line a run with a
# SHA-256, ~20 ms so.
_RECORD = "dgnroot/3"
_PLACE = re.compile(r"[0-9a-f]{32}")
# Seconds (wall) a command spends at most removing older layouts' files and gone roots' (``RunCache._tidy``), the
# rest left to the next: removing the 722 MB of a 10,000-run root's two code versions took 2.3 s of CPU but 69 s of
# a busy disk.
_TIDY_SECONDS = 1.0
# What older layouts kept in a shard folder (a run's key of 64 hex digits; the study digest's too; a study's file
# before a root had a folder of them): never read now.
_OLD = re.compile(r"[0-9a-f]{64}(\.run(\.checks-[0-9a-f]{16}\.json)?|\.json)?|[0-9a-f]{32}\.json|\.tmp-.*")
_OLD_IN_ENTRY = re.compile(r"(steps|evals)\.arrow|meta\.json|checks-[0-9a-f]{16}\.json|\.tmp-.*")


# The defaults of a run's fields that an entry leaves out when the run has them (``RunCache._write_run``)
_RUN_DEFAULTS = {"role": Run.role, "notes": [], "nan_steps": {}, "sources": {}}
# An instability detector's settings are kept as the JSON of their values in this order, the key of their events:
# a list costs less to write and read than a dict (dataclasses.asdict alone ~10 us), a key less than a list (one
# string a run to read and look up, not seven numbers to read and hash as a tuple), and a change of the fields is
# a change of the code's version.
_CONFIG_FIELDS = tuple(field.name for field in dataclasses.fields(InstabilityConfig))
_CONFIGS: dict[str, InstabilityConfig] = {}  # settings' JSON -> their one object: runs share a few


def _config(text: str) -> InstabilityConfig:
    config = _CONFIGS.get(text)
    if config is None:
        config = _CONFIGS[text] = InstabilityConfig(*json.loads(text))
    return config


def _events(stored: dict) -> dict:
    """A run's instability events by detector settings, from their JSON in an entry."""
    return {_config(config): [InstabilityEvent(**event) for event in events] for config, events in stored.items()}


# A run from ``load_many`` keeps its entry's instability events as their JSON until its study's work or a store asks
# for them (``settle``): a warm command whose studies are all cached never does (10,000 runs: ~40 ms of CPU).
_EVENTS = "_cached_instability"


def settle(run: Run) -> None:
    """Give ``run`` the instability events of its entry that ``load_many`` kept as their JSON, if any."""
    stored = run.__dict__.pop(_EVENTS, None)
    if stored is None:
        return
    try:
        found = _events(stored)
    except Exception:  # damaged: the checks find them again in the run's tables
        return
    instability.remember(run, found)


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
    fingerprints = sorted(f for f in _fingerprints(package, "", [])
                          if "__pycache__/" not in f and not f.startswith(_NOT_ANALYSIS))
    return hashlib.sha256("\0".join([__version__, *fingerprints]).encode()).hexdigest()[:16]


def checks_key(checks) -> str:
    """The settings of ``checks`` (``Check`` objects) and the code that runs them."""
    return hashlib.sha256(repr([code_version(), [(c.id, c.config) for c in checks]]).encode()).hexdigest()[:16]


class RunCache:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._entries = os.path.join(self.directory, "")  # each entry's path: a str join, not os.path.join's
        self._staging = os.path.join(self.directory, _STAGING)
        self._roots: dict[str, str] = {}  # a root -> its part of a key
        # key -> the JSON of that version of the run: from the root's record (``forget_absent``), and as found in
        # or written to entries by this command (``record``)
        self._recorded: dict[str, str] = {}
        self._texts: dict[str, str] = {}
        # the root's record: its path, its root's JSON (``_owner``), and its body as read
        self._record: tuple[str, str, memoryview | None] | None = None
        self._fresh = False  # whether ``_texts`` may differ from the record's JSON

    def key(self, folder: Path, reader_name: str, root: str) -> str:
        """The run in ``folder`` as ``reader_name`` reads it, now, below log root ``root`` (its real path).

        ``PLACE.ROOT.VERSION``: the entry's name (a hash of reader, root and
        folder), the root's (``StudyCache`` names a study's file by it), and a
        hash of everything the run depends on. Folder and root are what a run's
        default study is made of (the root's real name for runs at its top), so
        the study needs no key of its own.
        """
        root_part = self._roots.get(root)
        if root_part is None:
            self._tidy(root)  # once a command (and log root): at its first key
            root_part = self._roots[root] = _root_part(root)
        path = os.path.abspath(folder)
        place = hashlib.sha256(f"{reader_name}\0{root}\0{path}".encode()).hexdigest()[:32]
        fingerprints = _fingerprints(folder, "", [])
        fingerprints.sort()
        version = "\0".join([code_version(), reader_name, root, path, *fingerprints])
        return f"{place}.{root_part}.{hashlib.sha256(version.encode()).hexdigest()[:32]}"

    def load(self, key: str, checks_key: str, source: tuple) -> tuple[Run, list[Finding], list] | None:
        """The run of entry ``key`` (its tables read on first use), with its findings when ``checks_key`` ran on it.

        ``source`` is ``(root, folder, reader module name, keys)``: where the run
        is read again from should its tables turn out damaged when first used.
        The root's record (``forget_absent``) gives the JSON of this version of
        the run, when it holds ``checks_key``'s findings, without opening the entry.
        """
        text = self._recorded.get(key)
        meta = None
        if text:
            try:
                meta = json.loads(text)
            except Exception:  # a record's line not as written: the entry is asked, the line not kept
                self._fresh = True
        return self._load(key, checks_key, source, text, meta)

    def load_many(self, keys: list[str], checks_key: str, sources: list[tuple]) -> list[tuple | None]:
        """``load`` of each run (``keys[i]``, read again from ``sources[i]``), the root record's JSON of them read
        at once: one parse of 10,000 runs' lines, not one a run, costs ~15% less and shares their names' strings.
        Each run's instability events are made only when its study's work (``StudyCache.prepare``) or a store
        asks for them."""
        texts = [self._recorded.get(key) for key in keys]
        metas = _parse_lines([text for text in texts if text])
        if metas is None:  # a line not as written: each run's line on its own, a damaged one asks the entry
            return [self.load(key, checks_key, source) for key, source in zip(keys, sources)]
        metas = iter(metas)
        return [self._load(key, checks_key, source, text, next(metas) if text else None, later=True)
                for key, source, text in zip(keys, sources, texts)]

    def _load(self, key: str, checks_key: str, source: tuple, text: str | None, meta, later: bool = False):
        """``load``, given the record's JSON of the run (``text``, parsed: ``meta``), if any; ``later``: the run's
        instability events are made when its study's work asks for them (``StudyCache.prepare``)."""
        place, _, version = _key_parts(key)
        entry = self._entry(place)  # a str: ten thousand Path objects a warm run cost more than the JSON
        if meta is not None:
            try:
                if checks_key in meta["checks"]:
                    found = self._from_meta(meta, key, checks_key, (entry, version), source, later)
                    self._texts[key] = text
                    return found
            except Exception:  # a record's line not as written: the entry is asked, the line not kept
                self._fresh = True
        try:
            text = _meta_text(entry, version)
            found = self._from_meta(json.loads(text), key, checks_key, (entry, version), source, later)
            self._texts[key] = text
            self._fresh = True
            return found
        except (OSError, _Stale):  # not cached, another version of the run, or a cache that cannot be read
            return None
        except Exception:  # any damage: forget the entry, read the run again
            _drop(entry)
            return None

    def _from_meta(self, meta: dict, key: str, checks_key: str, entry: tuple[str, str], source: tuple,
                   later: bool = False):
        """``load``'s run made from an entry's JSON ``meta``; OSError, ``_Stale`` or any other on damage (``later``:
        but for its instability events, kept as their JSON until asked for)."""
        get = meta.get
        nan_steps = get("nan_steps")
        run = Run.with_tables_later(
            functools.partial(_read_table, entry, source),
            name=meta["name"],
            study=meta["study"],
            # the folder's own Path when it is the source, as it is for every reader (10,000 Paths cost 0.1 s)
            source=source[1] if meta["source"] == str(source[1]) else Path(meta["source"]),
            role=get("role", _RUN_DEFAULTS["role"]),
            config=meta["config"],
            status=meta["status"],
            format=meta["format"],
            notes=get("notes", []),
            nan_steps={k: np.asarray(v, dtype=np.int64) for k, v in nan_steps.items()} if nan_steps else {},
            sources=get("sources", {}),
            # what the findings document says of the tables, and the cached properties it reads
            facts=meta["facts"],
            lr=meta["lr"],
            momentum=meta["momentum"],
        )
        checked = meta["checks"].get(checks_key)
        if checked is None:
            try:
                checked = _read_sealed(_beside(entry[0], checks_key))
            except FileNotFoundError:
                return run, None, None
            if checked["key"] != key:  # left by another version of the run, or written for another
                return run, None, None
        if later:
            run.__dict__[_EVENTS] = checked["instability"]
        else:
            instability.remember(run, _events(checked["instability"]))
        return run, [Finding.from_dict(f) for f in checked["findings"]], [tuple(s) for s in checked["skipped"]]

    def store(self, key: str, run: Run, checks_key: str, findings: list[Finding], skipped: list) -> bool:
        """Keep ``run`` and what ``checks_key`` found in it; False when it is not kept (its tables are nowhere else)."""
        if run.status in UNCACHED:
            return False
        entry = self._entry(key)
        settle(run)
        checked = {
            "findings": [_finding_record(f) for f in findings],
            "skipped": skipped,
            # inf is a real value of an event (a loss gone non-finite): Python's JSON keeps it
            "instability": {
                _dumps([getattr(config, name) for name in _CONFIG_FIELDS]): [event.to_dict() for event in events]
                for config, events in instability.memoised(run).items()
            },
        }
        try:
            held = _held(entry, _version(key))
            if held:
                # the key says which version of the run it is of: the entry's own findings need none
                files.put(_beside(entry, checks_key), files.sealed([_dumps({"key": key, **checked}).encode()]),
                          self._staging)
            else:
                self._write_run(entry, key, run, {checks_key: checked})
                if held is not None:  # none where no entry is (``_drop``): a new run's store costs no look
                    _clear(_beside(entry))  # the findings of other settings on the version replaced
        except OSError:
            return False  # a cache that cannot be written costs speed, never the report
        return True

    def forget_absent(self, root: str, keys: list[str], variant: str = "") -> None:
        """Remove the entries of runs gone from log root ``root`` (its real path), whose runs now have ``keys``.

        A record per root names the runs (``key``) that the last command on it saw: an entry of a place in
        it that ``keys`` lack is removed, so the cache holds the runs present, not every run ever seen.
        ``variant`` names the key names the runs were read with (``""``: the default), whose entries are
        others and kept apart. Two commands on one root at once: the record is the last one's, so an entry
        only the other saw may stay; a present run's entry removed meanwhile is stored again, never misread.

        The record also holds the JSON of the entries that command found or wrote, by their full key: ``load``
        takes a run's from it when its key is the run's now (10,000 runs: one file read, not 10,000 entries).
        ``record`` writes the record anew once the runs are loaded or stored.
        """
        path, owner = os.path.join(self.directory, _ROOTS, _record_name(root, variant)), _owner(root, variant)
        self._recorded, body = _read_record(path, owner)
        self._record = path, owner, body
        # each key's place (``_key_parts``), split here: 20,000 calls cost ~5 ms
        places = {key.partition(".")[0] for key in keys}
        for place in {key.partition(".")[0] for key in self._recorded}.difference(places):
            if _PLACE.fullmatch(place):  # a damaged record names no other file
                _drop(self._entry(place))

    def record(self, keys: list[str]) -> None:
        """Write the record of the root ``forget_absent`` was last given: ``keys``, with the JSON of each run whose
        entry this command loaded or stored (one stored by a worker process is not known here: the next command
        reads its entry). Unchanged, it is not written."""
        if self._record is None:
            return
        path, owner, held = self._record
        if not (self._fresh or _UNKEPT) and keys == list(self._recorded):
            return  # each run's line as read: not even built (10,000 runs: ~40 ms)
        texts = self._texts
        if _UNKEPT:
            texts = {key: text for key, text in texts.items() if self._entry(key) not in _UNKEPT}
            # left out now: once stored again, a later command of this process keeps their lines
            _UNKEPT.difference_update([self._entry(key) for key in keys])
        lines = "\n".join([texts.get(key, "") for key in keys])
        body = f"{' '.join(keys)}\n{lines}".encode()
        if body == held:
            return
        try:
            files.put(path, [f"{_RECORD} {zlib.crc32(body):08x} {owner}\n".encode(), body], self._staging)
        except OSError:
            pass

    def tables_later(self, key: str, run: Run, source: tuple) -> None:
        """Drop ``run``'s tables (stored under ``key``): read from the entry again when next used.

        A worker process hands runs back this way, so that the main process is
        not sent tables that it may never need (a cached study, no figures).
        ``source`` is as for ``load``.
        """
        run.facts, run.lr, run.momentum  # noqa: B018 - what the document says of the tables, found while they are here
        run.__dict__.pop("steps", None)
        run.__dict__.pop("evals", None)
        run.__dict__["_load_table"] = functools.partial(_read_table, (self._entry(key), _version(key)), source)

    def _write_run(self, entry: str, key: str, run: Run, checks: dict[str, dict]) -> None:
        """The entry of ``run``, with what ``checks`` (checks key -> record) found in it, put in place at once."""
        meta = {
            "name": run.name,
            "study": run.study,
            "source": str(run.source),
            "config": to_jsonable(run.config),
            "status": run.status,
            "format": run.format,
            "facts": run.facts,
            "lr": run.lr,
            "momentum": run.momentum,
            "checks": checks,
        }
        # fields most runs leave at their default are kept only when not: ~2 us less JSON to read a run
        for name, value in (("role", run.role), ("notes", run.notes),
                            ("nan_steps", {k: v.tolist() for k, v in run.nan_steps.items()}),
                            ("sources", run.sources)):
            if value != _RUN_DEFAULTS[name]:
                meta[name] = value
        # IPC streams, not IPC files, put in place by one system call: a file writer cost ~0.1 ms a small table,
        # and it wrote into the file one system call a buffer. Uncompressed (IPC's default): 1.8x the bytes of
        # lz4, but a 100k-step table writes in 0.9 ms instead of 12.6 and reads in 0.6 ms instead of 1.9 (CPU).
        text = _dumps(meta)
        parts, ends, digests = [], [], []
        for table in (run.steps, run.evals):
            stream = _ipc_stream(_record_batch(table))
            digest = xxhash.xxh3_64()
            for part in stream:
                digest.update(part)
            parts += stream
            ends.append(sum(memoryview(part).nbytes for part in parts))
            digests.append(digest.intdigest())
        parts.append(text.encode())
        ends.append(ends[-1] + len(parts[-1]))
        files.put(entry, [*parts, _TRAILER.pack(*ends, *digests, zlib.crc32(parts[-1]), _LAYOUT,
                                                _version(key).encode())], self._staging)
        self._texts[key] = text
        self._fresh = True

    def _entry(self, key: str) -> str:
        """The file of the entry of a run's ``key``, or of its place."""
        place = _key_parts(key)[0]
        return f"{self._entries}{place[:2]}{os.sep}{place}.run"

    def _tidy(self, root: str) -> None:
        """Remove what this code never reads: staging files a killed process left, what the cache holds for log roots
        that no longer exist (but ``root``, this command's), and (once) older layouts.

        Cheap enough for every command: the staging folder holds only files being written, the marker is one small
        read, and the roots' records are listed and their first lines read (``_forget_gone_roots``). What takes
        longer stops after ``_TIDY_SECONDS``, the rest left to the next command: the walk of older layouts' shard
        folders, done when the marker is not ours and the marker written once a walk removed all, and the removal
        of a gone root's entries.
        """
        now, deadline = time.time(), time.monotonic() + _TIDY_SECONDS
        files.remove_abandoned(self._staging)
        marker = os.path.join(self.directory, _MARKER)
        try:
            upgrading = read_bytes(marker).decode() != _FOLDER_LAYOUT
        except (OSError, UnicodeDecodeError):
            upgrading = True
        if not self._forget_gone_roots(root, deadline, upgrading) or not upgrading:
            return
        for shards in (self.directory, self.directory / _STUDIES):
            try:
                folders = [entry.path for entry in os.scandir(shards)
                           if len(entry.name) == 2 and entry.is_dir(follow_symlinks=False)]
            except OSError:
                continue
            for folder in folders:
                if time.monotonic() > deadline:
                    return  # the rest at the next command
                _clear(folder, _OLD, now)
        try:
            files.put(marker, [_FOLDER_LAYOUT.encode()], self._staging)
        except OSError:
            pass

    def _forget_gone_roots(self, root: str, deadline: float, upgrading: bool) -> bool:
        """Remove what the cache holds for each log root but ``root`` that no longer exists: the entries its record
        names, its studies' files, then the record. False when ``deadline`` (monotonic) came first: the record of a
        root not done is left, and the next command goes on.

        A record says its root in its first line, read alone (a 10,000-run record is ~9 MB, read only when its root
        is gone), and only a line the record's name verifies counts: a record damaged there, or of an older layout,
        removes nothing (``upgrading``: records of older layouts are removed, their roots' next command writes them
        anew). A record damaged below that line names no entry: its root's studies' folder and itself go, which
        its root names. A root on a drive not mounted now looks gone: its runs are read again when it is back, never
        misread; and an entry removed under another process is a miss there.
        """
        for path, name, line in files.records(os.path.join(self.directory, _ROOTS), _RECORD, upgrading):
            if time.monotonic() > deadline:
                return False
            said = _recorded_root(line)
            if said is None:  # damaged: names no root
                continue
            gone, variant, owner = said
            # verified only when gone (~3 us a record): a line that says a root that exists removes nothing anyway
            if gone == root or os.path.lexists(gone) or (_record_name(gone, variant), _owner(gone, variant)) != (
                    name, owner):
                continue
            keys, body = _read_record(path, owner)
            part = _root_part(gone)
            for key in keys if body is not None else ():
                if time.monotonic() > deadline:
                    return False
                place, key_root, _ = _key_parts(key)
                if key_root == part and _PLACE.fullmatch(place):  # a key of another root's is never its entry
                    _drop(self._entry(place))
            _clear(os.path.join(self.directory, _STUDIES, part))
            files.remove(path)
        return True


def _record_batch(frame):
    """``frame`` as one Arrow record batch that reads back as the same frame (``_read_table``).

    Number columns go over as they are, and pandas' own Arrow strings (the ``str`` of an eval's split)
    as the Arrow array they already are: pandas' converter costs ~0.1 ms a column and inspects every
    string, most of a small run's write (1,000-step runs: 0.6 -> 0.3 ms a run). The columns are taken
    by position (``frames.column``), not as Series: a Series a column cost ~15 us, half of a small
    table's conversion. A table with other columns (object ones) keeps pandas' conversion, whose
    metadata gives back their dtype.
    """
    pa, column = _arrow()
    names = _names(frame.columns)
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


@functools.cache
def _arrow() -> tuple:
    """pyarrow and ``frames.column``, imported on the first table written: an import statement a table cost ~3 us."""
    import pyarrow as pa

    from .frames import column  # pandas: a frame is here already

    return pa, column


# A frame's column labels (an Index) -> its names, weakly held: ``tolist`` of pandas' str labels costs ~6 us, and the
# readers share one Index a header (``frames._labels``).
_NAMES: dict = {}


def _names(columns) -> list[str]:
    return once_per_object(_NAMES, columns, id(columns), columns.tolist)


def _ipc_stream(batch) -> list:
    """``batch`` as an Arrow IPC stream, its schema then it: bytes-like parts to write one after the other."""
    pa, _ = _arrow()
    # its buffers' size, not ``nbytes`` (~8 us): never less, so a few rows of large buffers are written uncopied
    if batch.get_total_buffer_size() < _COPIED_BELOW:
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


def _read_table(entry: tuple[str, str], source: tuple, name: str):
    """A cached run's ``steps`` or ``evals`` from ``entry`` (its path, the run's version).

    Damaged, gone or of another version of the run since the entry was loaded: from the run's own files again.
    """
    import pyarrow as pa  # only a run whose tables are used pays for it

    from .frames import from_arrow  # pandas too

    entry, version = entry
    try:
        handle = os.open(entry, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = _size(handle)
            ends, digests, _ = _trailer(entry, size, os.pread(handle, _TRAILER.size, max(0, size - _TRAILER.size)),
                                        version)
            table = _TABLES.index(name)
            start, end = [0, *ends][table:][:2]
            if end - start < _MAPPED_FROM:
                data = pa.py_buffer(os.pread(handle, end - start, start))
            else:
                # Mapped, one block per column as the readers build tables: the columns are the file's pages, not
                # copies into fresh memory (~6 ms a 100k-step table, mostly page faults). The file checked above:
                # an entry is replaced by rename, never rewritten in place, so it does not change under its reader.
                data = pa.py_buffer(mmap.mmap(handle, 0, access=mmap.ACCESS_READ)).slice(start, end - start)
        finally:
            os.close(handle)
        if xxhash.xxh3_64_intdigest(data) != digests[table]:
            raise ValueError(f"{entry}: damaged")  # a changed bit of a number still reads as a table
        return from_arrow(pa.ipc.open_stream(data).read_next_batch())
    except (OSError, _Stale):  # gone, or replaced by another version: that entry is not ours to drop
        pass
    except Exception:
        _drop(entry)
    _UNKEPT.add(entry)
    root, folder, reader_name, keys = source
    run = read_run(root, folder, importlib.import_module(reader_name), keys)
    if isinstance(run, Unreadable):
        raise LogError(Path(run.path), f"changed while being analyzed: {run.error}")
    return getattr(run, name)


# The entries whose tables were not there when read (a root's record served their run): the next record written
# leaves their JSON out, so that the next command asks the entry, and stores the run again.
_UNKEPT: set[str] = set()


def _meta_text(entry: str, version: str | None = None) -> str:
    """The JSON of an entry (of the run's ``version``, when given), as text: what its run is, and what the checks
    found in it.

    Descriptor calls, and the file's last 4 kB in one read, which mostly holds the JSON: a warm run reads
    ten thousand of them (36 -> 25 us CPU an entry, a file object and its seeks cost more than the JSON).
    """
    handle = os.open(entry, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = _size(handle)
        tail_start = max(0, size - _TAIL)
        tail = os.pread(handle, size - tail_start, tail_start)
        ends, _, crc = _trailer(entry, size, tail[-_TRAILER.size:], version)
        if ends[-2] >= tail_start:
            text = tail[ends[-2] - tail_start:ends[-1] - tail_start]
        else:
            text = os.pread(handle, ends[-1] - ends[-2], ends[-2])
    finally:
        os.close(handle)
    if zlib.crc32(text) != crc:
        raise ValueError(f"{entry}: damaged")
    return text.decode()  # a str to json.loads: bytes would be sniffed for their encoding first


def _root_part(root: str) -> str:
    """A log root's (real path) part of its runs' keys, which names its studies' folder."""
    return hashlib.sha256(root.encode()).hexdigest()[:16]


def _record_name(root: str, variant: str) -> str:
    """The file name of the record of log root ``root`` read with key names ``variant`` (``RunCache.forget_absent``)."""
    return f"{hashlib.sha256(f'{root}{chr(0)}{variant}'.encode()).hexdigest()[:32]}.json"


def _owner(root: str, variant: str) -> str:
    """The JSON of a root and variant in its record's first line: ASCII, no newline, whatever the path holds."""
    return _dumps([root, variant])


def _recorded_root(line: bytes) -> tuple[str, str, str] | None:
    """The log root, key names' variant and their JSON that a record's first ``line`` says; None when it says none
    (damaged, of another layout). They are the record's when its name is theirs (``_record_name``) and the JSON
    as written (``_owner``)."""
    try:
        tag, _, owner = line.decode().split(" ", 2)
        root, variant = json.loads(owner)
        if tag == _RECORD and type(root) is type(variant) is str:
            return root, variant, owner
    except (ValueError, TypeError):  # not three parts, not JSON of two strings
        pass
    return None


def _read_record(path: str, owner: str) -> tuple[dict[str, str], memoryview | None]:
    """A root's record (``RunCache.forget_absent``) of the root and variant ``owner`` (``_owner``): key -> that
    version's JSON ("": a run seen, not kept), and its body; none when there is no record, or it is damaged or of
    another layout.

    The body is read as a view and split once: each copy of 10,000 runs' ~9 MB costs ~2,000 fresh pages, ~8 ms of
    CPU in a command that touches them once.
    """
    try:
        data = read_bytes(path)
        start = data.find(b"\n") + 1
        body = memoryview(data)[start:]
        if not start or data[:start - 1] != f"{_RECORD} {zlib.crc32(body):08x} {owner}".encode():
            return {}, None
        keys, *texts = str(body, "utf-8").split("\n")
        if not keys:  # no runs
            return {}, body
        keys = keys.split(" ")
        if len(keys) != len(texts):
            return {}, None
        return dict(zip(keys, texts)), body
    except (OSError, UnicodeDecodeError):
        return {}, None


def _parse_lines(texts: list[str]) -> list | None:
    """The JSON objects of a record's lines ``texts``, parsed as one array; None when they are not one object each.

    A line is the JSON of an entry as written (the record's checksum says it is the record written): a count
    and a type suffice to tell the array is theirs, one a line.
    """
    if not texts:
        return []
    # the brackets on the first and last lines, so that the lines are copied once, not twice (a join, then with
    # its brackets): ~2,000 fresh pages less for 10,000 runs
    lines = list(texts)
    lines[0] = f"[{lines[0]}"
    lines[-1] = f"{lines[-1]}]"
    try:
        parsed = json.loads(",".join(lines))
    except Exception:
        return None
    if len(parsed) != len(texts) or not all(type(meta) is dict for meta in parsed):
        return None
    return parsed


class _Stale(Exception):
    """An entry of another version of its run: a miss, left for the store that replaces it."""


def _size(handle: int) -> int:
    """The size of an open file: its end's offset, not ``os.fstat``, whose result costs ~1.5 us more to make."""
    return os.lseek(handle, 0, os.SEEK_END)


def _trailer(entry: str, size: int, trailer: bytes, version: str | None = None) -> tuple[list[int], tuple, int]:
    """From the trailer of an entry of ``size`` bytes: where the steps stream, the evals stream and the JSON end,
    the XXH3-64 of each stream, and the CRC-32 of the JSON.

    ``_Stale`` when the entry is not of the run's ``version`` (None: any).
    """
    if len(trailer) != _TRAILER.size:
        raise ValueError(f"{entry}: damaged")  # not OSError, which says the cache cannot be read
    *ends, steps_digest, evals_digest, crc, tag, held = _TRAILER.unpack(trailer)
    if tag != _LAYOUT or ends != sorted(ends) or ends[-1] != size - _TRAILER.size:
        raise ValueError(f"{entry}: damaged")
    if version is not None and held.rstrip(b"\0") != version.encode():
        raise _Stale(entry)
    return ends, (steps_digest, evals_digest), crc


def _held(entry: str, version: str) -> bool | None:
    """Whether ``entry`` is an undamaged entry of the run's ``version``; None when there is none."""
    try:
        handle = os.open(entry, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        size = _size(handle)
        _trailer(entry, size, os.pread(handle, _TRAILER.size, max(0, size - _TRAILER.size)), version)
        return True
    except (ValueError, _Stale):
        return False
    finally:
        os.close(handle)


def _version(key: str) -> str:
    return _key_parts(key)[2]


def _key_parts(key: str) -> tuple[str, str, str]:
    """A run's key (``RunCache.key``) as its place, its root's part and its version; a key of another making
    (a scratch entry's) is all place."""
    place, _, rest = key.partition(".")
    root, _, version = rest.partition(".")
    return place, root, version


def _beside(entry: str, checks_key: str = "") -> str:
    """The folder of other check settings' findings on an entry's run, or the file of ``checks_key``'s."""
    return f"{entry}.checks{os.sep}{checks_key}.json" if checks_key else f"{entry}.checks"


def _clear(folder: str, names: re.Pattern | None = None, now: float | None = None) -> None:
    """Remove the files of ``folder`` (those ``names`` matches, or its old layout's folders' files), then it if empty.

    With ``now``, a staging file (``.tmp-*``) younger than ``files.ABANDONED`` may be another process's: kept.
    """
    try:
        with os.scandir(folder) as found:
            entries = list(found)
    except OSError:
        return
    for entry in entries:
        if names is not None and not names.fullmatch(entry.name):
            continue
        try:
            if entry.name.startswith(".tmp-") and now is not None and \
                    entry.stat(follow_symlinks=False).st_mtime >= now - files.ABANDONED:
                continue
            if entry.is_dir(follow_symlinks=False):
                _clear(entry.path, _OLD_IN_ENTRY)  # an older layout's entry folder, or its staging folder
            else:
                os.unlink(entry.path)
        except OSError:
            continue
    try:
        os.rmdir(folder)
    except OSError:  # not empty: files of another's, or written meanwhile
        pass


def _drop(entry: str) -> None:
    """Remove a damaged entry and what other settings found in its run, which a store where no entry is does not
    look for (``RunCache.store``)."""
    files.remove(entry)
    _clear(_beside(entry))


_STUDY_FILE = re.compile(r"[0-9a-f]{32}\.json")  # a study's file in its root's folder (``StudyCache.digest``)


class StudyCache:
    """``analyze.StudyWork`` of each study, by a digest of its runs' cache keys and every check's settings.

    One file a study (in the folder named by the root's part of its runs' keys, named by it and the study's name:
    a root deleted whole takes the folder with it, ``RunCache._forget_gone_roots``), under a CRC-32, holds the
    study's work for its runs' current keys (under each check settings' key): another version of a run, or of the
    code, is a miss, and the store that follows replaces the file.
    """

    def __init__(self, directory: Path, run_keys: dict[int, str], checks):
        self.directory = Path(directory) / _STUDIES
        self._staging = os.path.join(directory, _STAGING)
        self.run_keys = run_keys  # id(run) -> its RunCache key
        self.checks_key = checks_key(checks)
        self._files: dict[str, tuple[str, str]] = {}  # digest -> the study's file, and its runs' keys' digest

    def digest(self, study: Study) -> str | None:
        """None when a run of the study is not cached (still running, say): its work is done again each time."""
        runs, roots = [], set()
        for run in study.runs:
            key = self.run_keys.get(id(run))
            if key is None or run.status in UNCACHED:
                return None
            runs.append((run.name, key))
            roots.add(_key_parts(key)[1])
        # one JSON of the study's runs, hashed after what else each hash depends on (hex digits, no NUL): three
        # JSONs a study cost ~20 ms more for 1,000 studies
        runs = _dumps([study.name, sorted(runs)])
        digest = hashlib.sha256(f"{self.checks_key}\0{runs}".encode()).hexdigest()
        roots = "-".join(sorted(roots))  # one root's part: a command's runs are of one root
        place = hashlib.sha256(f"{roots}\0{study.name}".encode()).hexdigest()[:32]
        version = hashlib.sha256(f"{code_version()}\0{runs}".encode()).hexdigest()
        self._files[digest] = (f"{self.directory}{os.sep}{roots}{os.sep}{place}.json", version)
        return digest

    def prepare(self, study: Study) -> None:
        """Before ``study``'s work is done: its runs from ``RunCache.load_many`` get their entries' instability
        events."""
        for run in study.runs:
            settle(run)

    def load(self, digest: str) -> StudyWork | None:
        path, version = self._files.get(digest, (None, None))
        if path is None:
            return None
        try:
            held = _read_sealed(path)
            if held["runs"] != version or self.checks_key not in held["work"]:
                return None  # another version of the study (the store that follows replaces it), or settings
            record = held["work"][self.checks_key]
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
            files.remove(path)
            return None

    def forget_absent(self) -> None:
        """Remove the files of studies no longer in the root: those whose ``digest`` was not asked for.

        A study gone from a root that still exists (its runs deleted or moved) leaves its file in the root's folder;
        a study not cached now (a run still running) loses its file, which is of another version of the study.
        One listing a root (1,000 studies: ~3 ms of CPU).
        """
        kept = {path for path, _ in self._files.values()}
        for folder in {os.path.dirname(path) for path in kept}:
            try:
                with os.scandir(folder) as listed:
                    names = [entry.name for entry in listed]
            except OSError:
                continue
            for name in names:
                path = f"{folder}{os.sep}{name}"
                if _STUDY_FILE.fullmatch(name) and path not in kept:
                    files.remove(path)

    def store(self, digest: str, work: StudyWork) -> None:
        path, version = self._files.get(digest, (None, None))
        if path is None:
            return
        record = {
            "findings": [_finding_record(f) for f in work.findings],
            "skipped": work.skipped,
            "summary": _plain(work.summary),
            "above_best_lr": work.above_best_lr,
            "cells": work.cells,
        }
        try:
            held = _read_sealed(path)
            works = {**held["work"]} if held["runs"] == version else {}  # other settings' work on the same runs
        except Exception:  # none, or damaged: replaced
            works = {}
        try:
            files.put(path, files.sealed([_dumps({"runs": version, "work": {**works, self.checks_key: record}}).encode()]),
                 self._staging)
        except OSError:
            return  # a cache that cannot be written costs speed, never the report


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


def _fingerprints(folder, prefix: str, found: list[str]) -> list[str]:
    """``found`` with ``path\0size\0mtime`` of every file under ``folder`` (path relative to it, after ``prefix``):
    whatever a reader may read. Strings, not tuples to encode as JSON: 10,000 runs' keys cost ~0.05 s less CPU.
    No name holds a NUL, and size and mtime are digits: the joined strings of two folders are equal only when
    their files are."""
    try:
        with os.scandir(folder) as listed:
            entries = list(listed)
    except OSError:  # vanished while we walked: the next key sees the change
        return found
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                _fingerprints(entry.path, f"{prefix}{entry.name}/", found)
            elif not entry.is_symlink() or os.path.isfile(entry.path):
                stat = entry.stat()
                found.append(f"{prefix}{entry.name}\0{stat.st_size}\0{stat.st_mtime_ns}")
        except OSError:
            continue
    return found


def _read_sealed(path: str):
    """The JSON of a file written ``files.sealed`` (a study's or other settings' findings, shown as they are by a
    warm command); ValueError when its checksum does not hold."""
    data = files.unsealed(read_bytes(path))
    if data is None:
        raise ValueError(f"{path}: damaged")
    return json.loads(data.decode())  # bytes would be sniffed for their encoding first
