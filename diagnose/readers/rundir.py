"""The native run directory ``diagnose.run/1`` (CONTRACT §1).

A folder holding ``run.json``, ``steps.csv`` (one row per optimizer step) and
optionally ``evals.csv``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from ..errors import LogError
from ..model import STATUSES, Run, empty_evals, empty_steps

# pandas and the table code (pyarrow) are imported where a run's tables are built: sniffing the
# folders of a re-run that the cache serves then imports none of them (0.3 s).

FORMAT = "diagnose.run/1"
RUN_FILE = "run.json"
STEPS_FILE = "steps.csv"
EVALS_FILE = "evals.csv"

STEP_COLUMNS = ("grad_norm", "lr", "momentum", "time", "clip_norm", "clipped", "skipped")

# A run.json that says `running` while no file changed for this long is shown as interrupted.
STALE_AFTER_SECONDS = 30 * 60


def sniff(folder: Path) -> bool:
    return os.path.isfile(os.path.join(folder, RUN_FILE))  # not a Path: every folder of a log root, every run


def read(folder: Path, study: str, now: float | None = None) -> Run:
    from ..frames import frame
    from . import read_bytes
    from .table import Table, order_steps, read_columns

    meta_path = folder / RUN_FILE
    meta = _read_meta(meta_path, read_bytes(meta_path))
    name = _string(meta_path, meta, "name", folder.name)
    study = _string(meta_path, meta, "study", study)
    role = _string(meta_path, meta, "role", "train")
    config = _config(meta_path, meta)
    status = _status(meta_path, meta)
    notes: list[str] = []

    # The frames are built once, from the columns, already in order (pandas' per-frame cost is most of a tiny run),
    # one after the other once both files are read: pandas' code is then still in the CPU's caches (~2% of a run).
    steps_path = folder / STEPS_FILE
    steps_read = read_columns(steps_path, required=("step", "loss"), numeric=STEP_COLUMNS, step="step", if_file=True)
    if steps_read is None and status != "running":
        raise LogError(steps_path, f"missing: every run needs one ({RUN_FILE} says status {status!r})")
    evals_read = read_columns(folder / EVALS_FILE, required=("step", "split"), numeric=("loss",), text=("split",),
                              step="step", if_file=True)

    if steps_read is not None:
        columns, nan_rows, table_notes = steps_read
        step = columns["step"]
        if (step[1:] > step[:-1]).all():  # one row per step, in order: the common case
            steps, nan_steps = frame(columns), {name: step[rows] for name, rows in nan_rows.items()}
        else:
            steps, nan_steps = order_steps(steps_path, Table(frame(columns), nan_rows, table_notes))
        notes.extend(table_notes)
        if not len(steps):  # no rows: it has the step and loss columns
            notes.append(f"{STEPS_FILE}: no steps logged yet")
    else:
        steps, nan_steps = empty_steps(), {}
        notes.append(f"{STEPS_FILE}: not written yet")

    if evals_read is not None:
        columns, _, table_notes = evals_read
        step = columns["step"]
        if "loss" not in columns:
            columns["loss"] = np.full(len(step), np.nan)
        # step, split, loss first whatever the header's order, as every reader gives them
        evals = frame({name: columns.pop(name) for name in ("step", "split", "loss")} | columns)
        if not (step[1:] >= step[:-1]).all():
            evals = evals.sort_values("step", kind="stable").reset_index(drop=True)
        notes.extend(table_notes)
    else:
        evals = empty_evals()

    if status == "running" and _stale(folder, now):
        status = "interrupted"
        notes.append(
            f"{RUN_FILE} says running, but no file changed for over {STALE_AFTER_SECONDS // 60} minutes: "
            "shown as interrupted"
        )
    # Built last, with its tables: Run's defaults would build two empty DataFrames for nothing (tiny runs).
    return Run(
        name=name,
        study=study,
        source=folder,
        steps=steps,
        evals=evals,
        role=role,
        config=config,
        status=status,
        format=FORMAT,
        notes=notes,
        nan_steps=nan_steps,
    )


def _read_meta(path: Path, data: bytes) -> dict:
    """The run.json at ``path``, whose bytes are ``data`` (read without a file object: ~7 us of a tiny file's ~15)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise LogError(path, "not UTF-8 text") from None
    if "\r" in text:  # newlines as read_text reads them, so that a JSON error's line and column are the same
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise LogError(path, "file is empty: expected a JSON object with \"format\": \"diagnose.run/1\"")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as error:
        raise LogError(path, f"invalid JSON: {error.msg} (column {error.colno})", line=error.lineno) from None
    if not isinstance(meta, dict):
        raise LogError(path, f"expected a JSON object, found {type(meta).__name__}")
    if "format" not in meta:
        raise LogError(path, f"missing required key \"format\" (expected \"{FORMAT}\")")
    if meta["format"] != FORMAT:
        raise LogError(path, f"unsupported format {meta['format']!r} (this version reads \"{FORMAT}\")")
    return meta


def _string(path: Path, meta: dict, key: str, default: str) -> str:
    value = meta.get(key)
    if value is None:
        return default
    if not isinstance(value, str) or not value.strip():
        raise LogError(path, f"\"{key}\" must be a non-empty string, found {json.dumps(value)}")
    return value


def _config(path: Path, meta: dict) -> dict:
    config = meta.get("config")
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise LogError(path, f"\"config\" must be an object, found {type(config).__name__}")
    for key in ("lr", "momentum", "clip_norm", "max_steps", "warmup_steps", "batch_size"):
        value = config.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise LogError(path, f"config \"{key}\" must be a number, found {json.dumps(value)}")
    return config


def _status(path: Path, meta: dict) -> str | None:
    status = meta.get("status")
    if status is None:
        return None
    if status not in STATUSES[:-1]:
        allowed = ", ".join(STATUSES[:-1])
        raise LogError(path, f"\"status\" must be one of {allowed}; found {json.dumps(status)}")
    return status


def _stale(folder: Path, now: float | None) -> bool:
    now = time.time() if now is None else now
    newest = max(path.stat().st_mtime for path in folder.iterdir() if path.is_file())
    return now - newest > STALE_AFTER_SECONDS
