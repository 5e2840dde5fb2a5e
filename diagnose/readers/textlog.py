"""Plain-text logs that training scripts print: ``key: value`` / ``key=value`` pairs per line.

A line that names a step (``step:120/5100``, ``s:120``, ``iter=120``,
``global_step: 120``) and some numbers is one record; its pairs are mapped
like every other log's keys (``train_loss`` / ``loss`` / ``trl`` the training
loss, ``val_loss`` / ``tel`` an evaluation, ``lr``, ``grad_norm``). A unit
glued to a number (``train_time:278ms``) is dropped; ``step:N/M`` gives
``max_steps`` = M. Lines without a step (banners, printed configs) are not
records. The file is read line by line, so a log of any size needs memory
only for the numbers it holds.
"""

from __future__ import annotations

import math
import re
from array import array
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import LogError
from ..model import Run
from .keys import DEFAULT_KEYS, STEP_NAMES, KeyMap, assemble, classify, normalize
from .table import MAX_STEP, Table

FORMAT = "text"
SUFFIXES = (".log", ".txt", ".out")
SNIFF_BYTES = 1 << 16
SNIFF_RECORDS = 2  # a README that mentions "step: 1" once is not a log

_PAIR = re.compile(
    r"(?<![\w./-])(?P<key>[A-Za-z_][\w./-]*)\s*[:=]\s*"
    r"(?P<value>[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|nan|infinity|inf))"
    r"(?:/(?P<total>\d+))?(?P<unit>[A-Za-z%]*)(?![\w.])",
    re.IGNORECASE,
)


def sniff(folder: Path, keys: KeyMap = DEFAULT_KEYS) -> bool:
    return bool(log_files(folder, keys))


def log_files(folder: Path, keys: KeyMap = DEFAULT_KEYS) -> list[Path]:
    """Text files directly in ``folder`` whose first lines hold step records with a loss."""
    try:
        candidates = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
    except OSError:
        return []
    return [path for path in candidates if _looks_like_log(path, keys)]


def _looks_like_log(path: Path, keys: KeyMap) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError:
        return False
    if b"\0" in head:
        return False
    found = 0
    for line in head.decode("utf-8", errors="replace").splitlines():
        pairs = parse_line(line)
        if _step_key(pairs, keys) is not None and classify(list(pairs), keys).step.get("loss"):
            found += 1
            if found >= SNIFF_RECORDS:
                return True
    return False


def parse_line(line: str) -> dict[str, tuple[float, str | None]]:
    """``{"step": (120.0, "5100"), "train_loss": (3.42, None), ...}`` for one line."""
    return {key: (float(value), total or None) for key, value, total, _ in _PAIR.findall(line)}


def _step_key(pairs: dict, keys: KeyMap) -> str | None:
    if keys.step is not None:
        return keys.step if keys.step in pairs else None
    return next((key for key in pairs if normalize(key) in STEP_NAMES), None)


def read(folder: Path, study: str, keys: KeyMap = DEFAULT_KEYS) -> Run:
    """The run whose text log lies in ``folder`` (one log per folder)."""
    files = log_files(folder, keys)
    if len(files) > 1:
        names = ", ".join(p.name for p in files)
        raise LogError(folder, f"holds {len(files)} training logs ({names}): put each run's log in a folder of its own")
    path = files[0]
    records, max_steps = _records(path, keys)
    parts = assemble(path, records, keys, what=f"keys printed in {path.name}")
    return parts.run(folder, study, format=FORMAT, config={"max_steps": max_steps} if max_steps else {})


def _records(path: Path, keys: KeyMap) -> tuple[Table, int | None]:
    columns: dict[str, array] = {}
    nan_rows: dict[str, array] = {}
    steps = array("q")
    max_steps = None
    with open(path, encoding="utf-8", errors="replace", newline=None) as handle:
        for number, line in enumerate(handle, start=1):
            pairs = parse_line(line)
            step_key = _step_key(pairs, keys)
            if step_key is None or len(pairs) < 2:
                continue
            step, total = pairs.pop(step_key)
            if not math.isfinite(step) or step < 0 or step != int(step) or step > MAX_STEP:
                raise LogError(path, f"{step_key} must be a whole number >= 0, found {step!r}", line=number)
            row = len(steps)
            steps.append(int(step))
            if total is not None:
                max_steps = int(total)
            for key, (value, _) in pairs.items():
                column = columns.get(key)
                if column is None:
                    column = columns[key] = array("d", [math.nan]) * row
                column.append(value)
                if math.isnan(value):
                    nan_rows.setdefault(key, array("q")).append(row)
            for column in columns.values():
                if len(column) == row:
                    column.append(math.nan)
    if not steps:
        raise LogError(path, "no line names a step and a loss")
    frame = pd.DataFrame({"step": np.frombuffer(steps, dtype=np.int64),
                          **{key: np.frombuffer(values, dtype=np.float64) for key, values in columns.items()}})
    nan_arrays = {key: np.frombuffer(rows, dtype=np.int64) for key, rows in nan_rows.items()}
    return Table(frame=frame, nan_rows=nan_arrays, notes=[]), max_steps
