"""A cache of parsed runs and their run-level findings, keyed by the run's files.

Re-running a report on a log root where a few runs changed re-reads only
those. An entry is keyed by the reader, the folder, its study and the size and
mtime of every file under the folder (subfolders too: a Hugging Face run's new
``checkpoint-N/trainer_state.json`` is a change), so a changed file is a miss; an entry that cannot be loaded
(corrupt, truncated, written by another version) is dropped and the run read
again. Runs still ``running`` are never cached: their status depends on the
clock. Tables are stored as Arrow IPC files, never pickles; with the
run-level findings goes the run's instability events
(``diagnose.instability``), so the study checks of a warm re-run need not find
them again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather

from . import __version__, instability
from .findings import Finding, to_jsonable
from .instability import InstabilityConfig, InstabilityEvent
from .model import Run

CACHE_ENV = "DIAGNOSE_CACHE_DIR"


def default_directory() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "diagnose"


class RunCache:
    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def key(self, folder: Path, reader_name: str, study: str) -> str:
        """The entry of ``folder`` as ``reader_name`` reads it into ``study``, now."""
        files = sorted(_fingerprints(Path(folder)))
        identity = json.dumps([__version__, reader_name, str(Path(folder).resolve()), study, files])
        return hashlib.sha256(identity.encode()).hexdigest()

    def load(self, key: str, checks_key: str) -> tuple[Run, list[Finding], list] | None:
        entry = self._entry(key)
        if not (entry / "meta.json").is_file():
            return None
        try:
            meta = json.loads((entry / "meta.json").read_text())
            run = Run(
                name=meta["name"],
                study=meta["study"],
                source=Path(meta["source"]),
                steps=feather.read_table(entry / "steps.arrow").to_pandas(),
                evals=feather.read_table(entry / "evals.arrow").to_pandas(),
                role=meta["role"],
                config=meta["config"],
                status=meta["status"],
                format=meta["format"],
                notes=meta["notes"],
                nan_steps={k: np.asarray(v, dtype=np.int64) for k, v in meta["nan_steps"].items()},
                sources=meta["sources"],
            )
            checked_path = entry / f"checks-{checks_key}.json"
            if not checked_path.is_file():
                return run, None, None
            checked = json.loads(checked_path.read_text())
            instability.remember(run, {
                InstabilityConfig(**config): [InstabilityEvent(**event) for event in events]
                for config, events in checked["instability"]
            })
            return run, [Finding.from_dict(f) for f in checked["findings"]], checked["skipped"]
        except Exception:  # any damage: forget the entry, read the run again
            shutil.rmtree(entry, ignore_errors=True)
            return None

    def store(self, key: str, run: Run, checks_key: str, findings: list[Finding], skipped: list) -> None:
        if run.status in ("running", "interrupted"):
            return
        entry = self._entry(key)
        try:
            if not (entry / "meta.json").is_file():
                self._write_run(entry, run)
            checked = {
                "findings": [f.to_dict() for f in findings],
                "skipped": skipped,
                # inf is a real value of an event (a loss gone non-finite): Python's JSON keeps it
                "instability": [
                    [dataclasses.asdict(config), [event.to_dict() for event in events]]
                    for config, events in instability.memoised(run).items()
                ],
            }
            _atomic_write(entry / f"checks-{checks_key}.json", json.dumps(checked))
        except OSError:
            return  # a cache that cannot be written costs speed, never the report

    def _write_run(self, entry: Path, run: Run) -> None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=entry.parent, prefix=".tmp-"))
        try:
            feather.write_feather(pa.Table.from_pandas(run.steps, preserve_index=False), staging / "steps.arrow")
            feather.write_feather(pa.Table.from_pandas(run.evals, preserve_index=False), staging / "evals.arrow")
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
            }
            (staging / "meta.json").write_text(json.dumps(meta))
            shutil.rmtree(entry, ignore_errors=True)
            os.replace(staging, entry)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _entry(self, key: str) -> Path:
        return self.directory / key[:2] / key


def _fingerprints(folder: Path):
    """(relative path, size, mtime) of every file under ``folder``: whatever a reader may read."""
    for directory, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(directory, name)
            try:
                stat = os.stat(path)
            except OSError:  # vanished while we walked: the next key sees the change
                continue
            yield os.path.relpath(path, folder), stat.st_size, stat.st_mtime_ns


def _atomic_write(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(handle, "w") as stream:
        stream.write(text)
    os.replace(temporary, path)
