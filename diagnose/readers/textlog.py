"""Plain-text logs that training scripts print: ``key: value`` / ``key=value`` / ``key value`` pairs per line.

A line that names a step (``step:120/5100``, ``s:120``, ``iter=120``,
``global_step: 120``) and some numbers is one record. Its step is found as a
CSV's step column is (``find_step_column``): the user's ``--step-key``, else
the best known name, so ``iter:5 step:1005`` is step 1005 with ``iter`` kept
as a metric. A line that gives its step twice with different values (``step:2
step:5``, ``Step:2 step:5``, a ``step`` beside ``--step-key iter``) is an
error at its line, and so is any other key printed twice with different values
(never the last one silently). A split word before a key is part of it
(``train loss`` / ``val loss`` / ``valid loss``), so a line keeps both losses
apart. Its other pairs are mapped like every other log's keys (``train_loss``
/ ``loss`` / ``trl`` the training loss, ``val_loss`` / ``tel`` an evaluation,
``lr``, ``grad_norm``). A unit glued to a number (``train_time:278ms``) is
dropped; ``step:N/M`` gives ``max_steps`` = M. nanoGPT's ``step N: train loss
X, val loss Y`` beside ``iter N: loss Z``: the first line's train loss is the
``train`` split of that evaluation (see ``_train_split_of_evaluations``).
Lines without a step (banners, printed configs) are not records. The file is
read line by line, so a log of any size needs memory only for the numbers it
holds.
"""

from __future__ import annotations

import math
import os
import re
from array import array
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import LogError
from ..model import Run
from .folders import files_in, one_log
from .keys import DEFAULT_KEYS, KNOWN, STEP_NAMES, KeyMap, classify, find_step_column, normalize

if TYPE_CHECKING:
    from .table import Table

# The table code (pandas, pyarrow: ``records``, ``table``) is imported where a run's tables are built:
# sniffing the folders of a re-run that the cache serves then imports none of it (0.3 s).

FORMAT = "text"
SUFFIXES = (".log", ".txt", ".out")
SNIFF_BYTES = 1 << 16
SNIFF_RECORDS = 2  # a README that mentions "step: 1" once is not a log
TRAIN_EVAL = "eval_train_loss"  # read by keys.classify as the loss of an evaluation on the train split

# ``key: value``, ``key=value`` or nanoGPT's ``key value``; a split word before a key stays part of it
# (``train loss: 2.3 | val loss: 2.5`` are two keys, not ``loss`` twice), unless the key is a step (``Train Step: 5``).
_PAIR = re.compile(
    r"(?<![\w./-])(?P<key>(?:(?:train|val|valid|validation|eval|test|dev)[ \t]+"
    rf"(?!(?:{'|'.join(STEP_NAMES)})(?![\w./-])))?[A-Za-z_][\w./-]*)"
    r"(?:\s*[:=]\s*|[ \t]+)"
    r"(?P<value>[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|nan|infinity|inf))"
    r"(?:/(?P<total>\d+))?(?P<unit>[A-Za-z%]*)(?![\w.])",
    re.IGNORECASE,
)


def sniff(folder: Path, keys: KeyMap = DEFAULT_KEYS) -> bool:
    return bool(log_files(folder, keys))


def log_files(folder: Path, keys: KeyMap = DEFAULT_KEYS) -> list[Path]:
    """Text files directly in ``folder`` whose first lines hold step records with a loss."""
    candidates = files_in(folder, lambda name: os.path.splitext(name)[1].lower() in SUFFIXES)
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
        names = tuple(key for key, _, _, _ in _PAIR.findall(line))
        if _step_key(names, keys) is not None and classify(list(names), keys).step.get("loss"):
            found += 1
            if found >= SNIFF_RECORDS:
                return True
    return False


@lru_cache(maxsize=1024)
def _step_key(names: tuple[str, ...], keys: KeyMap) -> str | None:
    """The key that numbers a line's step, found as a CSV's step column is; cached: most lines print the same keys."""
    return find_step_column(list(names), keys)


def read(folder: Path, study: str, keys: KeyMap = DEFAULT_KEYS) -> Run:
    """The run whose text log lies in ``folder`` (one log per folder)."""
    from .records import assemble

    path = one_log(folder, log_files(folder, keys), "training logs")
    records, max_steps, first_lines = _records(path, keys)
    records, renamed = _train_split_of_evaluations(records, keys)
    parts = assemble(path, records, keys, what=f"keys printed in {path.name}",
                     line_of=lambda key: first_lines.get(renamed.get(key, key)))
    sources = {role: renamed.get(column, column) for role, column in parts.sources.items()}
    return parts.run(folder, study, format=FORMAT, config={"max_steps": max_steps} if max_steps else {},
                     sources=sources)


def _train_split_of_evaluations(records: Table, keys: KeyMap) -> tuple[Table, dict[str, str]]:
    """nanoGPT prints ``step 250: train loss 2.1, val loss 2.2`` (its estimate over eval batches) beside
    ``iter 250: loss 3.2`` (the update's loss). When the key taken for the training loss is printed only on lines
    that print an evaluation and another training-loss key is printed on lines of its own, the first is the
    ``train`` split of that evaluation (renamed to HF's ``eval_train_loss``), and the second the training loss.
    Returns the records and {new name: name printed}."""
    from .records import logged_rows
    from .table import Table

    frame = records.frame
    columns = [c for c in frame.columns if c != "step"]
    roles = classify(columns, keys)
    loss = roles.step.get("loss")
    if keys.loss is not None or loss is None or not roles.evals or TRAIN_EVAL in frame.columns:
        return records, {}
    evaluated = np.logical_or.reduce([logged_rows(records, c) for c in roles.evals.values()])
    alone = [c for c in columns if c != loss and normalize(c) in KNOWN["loss"]]
    if (logged_rows(records, loss) & ~evaluated).any() or not any((logged_rows(records, c) & ~evaluated).any()
                                                               for c in alone):
        return records, {}
    nan_rows = {TRAIN_EVAL if name == loss else name: rows for name, rows in records.nan_rows.items()}
    return Table(frame.rename(columns={loss: TRAIN_EVAL}), nan_rows, records.notes), {TRAIN_EVAL: loss}


def _records(path: Path, keys: KeyMap) -> tuple[Table, int | None, dict[str, int]]:
    """The records of the lines that name a step, ``max_steps`` (``step:N/M``) and the line where each key is first
    printed."""
    import pandas as pd

    from .table import MAX_STEP, Table

    columns: dict[str, array] = {}
    nan_rows: dict[str, array] = {}
    first_lines: dict[str, int] = {}
    steps = array("q")
    max_steps = None
    with open(path, encoding="utf-8", errors="replace", newline=None) as handle:
        for number, line in enumerate(handle, start=1):
            found = _PAIR.findall(line)  # [(key, value, total, unit)], in order: a key may repeat
            pairs = {key: (float(value), total or None) for key, value, total, _ in found}
            step_key = _step_key(tuple(pairs), keys)
            if step_key is None or len(pairs) < 2:
                continue
            step, total = pairs.pop(step_key)
            if not math.isfinite(step) or step < 0 or step != int(step) or step > MAX_STEP:
                raise LogError(path, f"{step_key} must be a whole number >= 0, found {step!r}", line=number)
            if "step" in pairs or len(found) > len(pairs) + 1:
                _one_step(path, number, step_key, step, found, keys)
                pairs.pop("step", None)  # the same number again: nothing is lost
                _one_value(path, number, found, step_key)
            row = len(steps)
            steps.append(int(step))
            if total is not None:
                max_steps = int(total)
            for key, (value, _) in pairs.items():
                column = columns.get(key)
                if column is None:
                    column = columns[key] = array("d", [math.nan]) * row
                    first_lines[key] = number
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
    return Table(frame=frame, nan_rows=nan_arrays, notes=[]), max_steps, first_lines


def _one_step(path: Path, number: int, step_key: str, step: float, found: list[tuple[str, ...]],
              keys: KeyMap) -> None:
    """A line may give its step again (the key repeated, or a key named ``step`` beside another step key) only
    with the same number: records keep their step in a column named ``step``, which a second one would replace."""
    given = [(key, float(value)) for key, value, _, _ in found if key in (step_key, "step")]
    if any(value != step for _, value in given):
        shown = ", ".join(f"{key}:{value:g}" + (" (--step-key)" if key == keys.step else "") for key, value in given)
        raise LogError(path, f"the step is given twice with different values: {shown}", line=number)


def _one_value(path: Path, number: int, found: list[tuple[str, ...]], step_key: str) -> None:
    """A key printed twice on a line must print the same number: a record keeps one value per key."""
    first: dict[str, str] = {}
    for key, value, _, _ in found:
        if key in (step_key, "step"):
            continue
        seen = first.setdefault(key, value)
        a, b = float(seen), float(value)
        if a != b and not (math.isnan(a) and math.isnan(b)):
            raise LogError(path, f"{key!r} is given twice with different values: {seen}, {value}", line=number)
