"""Hugging Face Trainer: ``trainer_state.json`` and its ``log_history``.

The Trainer appends one entry to ``log_history`` per logging step (``loss``,
``grad_norm``, ``learning_rate``, ``epoch``), one per evaluation
(``eval_loss``, ``eval_accuracy``, ...; with several eval datasets
``eval_<name>_loss``, each its own split) and a last summary entry
(``train_runtime``, ``train_loss``). An output folder keeps a copy of the
state in every ``checkpoint-N`` subfolder: they are one run, read from the
newest state (its history holds all earlier ones). ``step`` is the Trainer's
``global_step`` as logged (the number of updates done).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import LogError
from ..model import Run
from .keys import DEFAULT_KEYS, KeyMap, classify, config_from

if TYPE_CHECKING:
    from .table import Table

# The table code (pandas, pyarrow: ``records``, ``table``) is imported where a run's tables are built:
# sniffing the folders of a re-run that the cache serves then imports none of it (0.3 s).

FORMAT = "hf.trainer_state"
STATE_FILE = "trainer_state.json"
CHECKPOINT = re.compile(r"checkpoint-(\d+)")
SUMMARY_KEY = "train_runtime"  # only the Trainer's end-of-training summary entry has it


def sniff(folder: Path) -> bool:
    return os.path.isfile(os.path.join(folder, STATE_FILE)) or bool(_checkpoint_states(folder))


def read(folder: Path, study: str, keys: KeyMap = DEFAULT_KEYS) -> Run:
    """The run whose newest ``trainer_state.json`` lies in ``folder`` or its ``checkpoint-N`` subfolders."""
    from .records import assemble

    path, notes = _newest_state(folder)
    text = _read_text(path)
    state = _parse(path, text)
    history = state.get("log_history")
    if history is None:
        raise LogError(path, "missing key \"log_history\" (is this a Trainer's trainer_state.json?)")
    if not isinstance(history, list):
        raise LogError(path, f"\"log_history\" must be a list, found {type(history).__name__}")

    lines = _EntryLines(text)
    records, finished = _records(path, lines, history, keys)
    if records.frame.empty:
        raise LogError(path, "log_history holds no logged step yet")

    def first_line(key: str) -> int | None:
        index = next((i for i, entry in enumerate(history) if isinstance(entry, dict) and key in entry), None)
        return None if index is None else lines.of(index)

    parts = assemble(path, records, keys, what=f"log_history keys of {STATE_FILE}", line_of=first_line)
    return parts.run(
        folder, study, format=FORMAT, config=_config(state), status="finished" if finished else None, notes=notes
    )


def _checkpoint_states(folder: Path) -> list[tuple[int, Path]]:
    found = []
    try:
        with os.scandir(folder) as entries:
            names = [entry.name for entry in entries]  # names, not Paths: every folder is sniffed on every run
    except OSError:
        return []
    for name in names:
        match = CHECKPOINT.fullmatch(name)
        if match and os.path.isfile(os.path.join(folder, name, STATE_FILE)):
            found.append((int(match.group(1)), folder / name / STATE_FILE))
    return sorted(found)


def _newest_state(folder: Path) -> tuple[Path, list[str]]:
    """The top-level state, unless a checkpoint is newer (a resumed run that did not finish)."""
    checkpoints = _checkpoint_states(folder)
    top = folder / STATE_FILE
    if not checkpoints:
        return top, []
    newest_step, newest = checkpoints[-1]
    if top.is_file() and _global_step(top) >= newest_step:
        return top, []
    note = f"read {newest.relative_to(folder)}: the newest saved state of this run"
    return newest, [note]


def _global_step(path: Path) -> int:
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("global_step")
    except (OSError, ValueError, AttributeError):
        return -1
    return value if isinstance(value, int) else -1


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if not data.strip():
        raise LogError(path, "file is empty: expected the Trainer's JSON state with a \"log_history\" list", line=1)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise LogError(path, "not UTF-8 text (is this a trainer_state.json?)", line=line) from None


def _parse(path: Path, text: str) -> dict:
    try:
        state = json.loads(text)
    except json.JSONDecodeError as error:
        cut = error.pos >= len(text.rstrip())
        reason = "file ends in the middle of the JSON (cut short?)" if cut else f"invalid JSON: {error.msg}"
        raise LogError(path, f"{reason} (column {error.colno})", line=error.lineno) from None
    except RecursionError:
        raise LogError(path, "invalid JSON: nested too deeply", line=1) from None
    if not isinstance(state, dict):
        raise LogError(path, f"expected a JSON object, found {type(state).__name__}", line=1)
    return state


def _records(path: Path, lines: _EntryLines, history: list, keys: KeyMap) -> tuple[Table, bool]:
    """One row per log entry (summary left out); a wrong type in a used key is an error at its line."""
    import pandas as pd

    from .table import MAX_STEP, Table

    values: dict[str, np.ndarray] = {}
    nan_rows: dict[str, list[int]] = {}
    text_values: dict[str, tuple[int, object]] = {}
    steps: list[int] = []
    entries = []
    finished = False
    for index, entry in enumerate(history):
        if not isinstance(entry, dict):
            raise LogError(path, f"log_history[{index}] must be an object, found {type(entry).__name__}",
                           line=lines.of(index))
        if SUMMARY_KEY in entry:
            finished = True
            continue
        step = entry.get("step")
        if isinstance(step, bool) or not isinstance(step, (int, float)) or not math.isfinite(step) \
                or step < 0 or step != int(step) or step > MAX_STEP:
            raise LogError(path, f"log_history[{index}]: \"step\" must be a whole number >= 0, "
                                 f"found {json.dumps(step)}", line=lines.of(index))
        steps.append(int(step))
        entries.append((index, entry))

    numeric_keys: list[str] = []
    for index, entry in entries:
        for key, value in entry.items():
            if key == "step" or value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                text_values.setdefault(key, (index, value))
            elif key not in values:
                numeric_keys.append(key)
                values[key] = np.full(len(entries), np.nan)

    roles = classify(list(values) + list(text_values), keys)
    used = set(roles.step.values()) | set(roles.evals.values())
    notes = []
    for key, (index, value) in text_values.items():
        if key in used:
            raise LogError(path, f"log_history[{index}]: {key!r} must be a number, found {json.dumps(value)[:40]}",
                           line=lines.of(index))
        if key not in values:
            notes.append(f"{path.name}: key {key!r} holds {type(value).__name__} values "
                         f"(e.g. {json.dumps(value)[:30]}), not numbers: left out")

    for row, (index, entry) in enumerate(entries):
        for key, value in entry.items():
            if key in values and isinstance(value, (int, float)) and not isinstance(value, bool):
                values[key][row] = value
                if math.isnan(value):
                    nan_rows.setdefault(key, []).append(row)
    frame = pd.DataFrame({"step": np.asarray(steps, dtype=np.int64), **values})
    nan_arrays = {key: np.asarray(rows, dtype=np.int64) for key, rows in nan_rows.items()}
    return Table(frame=frame, nan_rows=nan_arrays, notes=notes), finished


class _EntryLines:
    """The line where ``log_history[i]`` starts, found only when an error needs it."""

    def __init__(self, text: str):
        self.text = text
        self.starts: list[int] | None = None

    def of(self, index: int) -> int | None:
        if self.starts is None:
            self.starts = self._entry_starts()
        if index < len(self.starts):
            return self.text.count("\n", 0, self.starts[index]) + 1
        return None

    def _entry_starts(self) -> list[int]:
        match = re.search(r'"log_history"\s*:\s*\[', self.text)
        if match is None:
            return []
        decoder = json.JSONDecoder()
        position, starts = match.end(), []
        while True:
            while position < len(self.text) and self.text[position] in " \t\r\n,":
                position += 1
            if position >= len(self.text) or self.text[position] == "]":
                return starts
            starts.append(position)
            try:
                _, position = decoder.raw_decode(self.text, position)
            except ValueError:
                return starts


def _config(state: dict) -> dict:
    hparams = {}
    for key in ("max_steps", "train_batch_size", "num_train_epochs", "logging_steps", "eval_steps", "save_steps"):
        if isinstance(state.get(key), (int, float)) and not isinstance(state.get(key), bool):
            hparams[key] = state[key]
    trial = state.get("trial_params")
    if isinstance(trial, dict):
        hparams.update(trial)
    return config_from(hparams)
