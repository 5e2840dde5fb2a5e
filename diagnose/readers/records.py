"""How a log's raw records become a Run's tables.

Every non-native reader turns its file into *records* (a ``Table``: one row
per log record, a ``step`` column, NaN where a key was not logged, literal
NaNs listed in ``nan_rows``) and calls ``assemble``, which maps the keys onto
the Run's ``steps`` columns (``loss``, ``grad_norm``, ``lr``, ``momentum``,
extras kept under their own names) as ``keys.classify`` names them, and onto
``evals`` (``step``, ``split``, ``loss``, further metrics). Readers import
this module only when they read a run: what a key means (``keys``) is needed
to sniff every folder, tables only for the runs that are read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import LogError
from ..model import Run, empty_evals
from .keys import DEFAULT_KEYS, STEP_ROLES, KeyMap, Roles, classify
from .table import Table, order_steps, select_rows

# The option that names the key of a step column, and what it holds: the way out when two keys could be it.
OPTIONS = {"loss": ("--loss-key", "the training loss"), "grad_norm": ("--grad-norm-key", "the gradient norm"),
           "lr": ("--lr-key", "the learning rate"), "momentum": ("--momentum-key", "the momentum")}


@dataclass
class Assembled:
    steps: pd.DataFrame
    nan_steps: dict[str, np.ndarray]
    evals: pd.DataFrame
    sources: dict[str, str]
    notes: list[str]

    def run(self, folder: Path, study: str, *, format: str, config: dict, **fields) -> Run:
        """The run of ``folder`` (named after it, CONTRACT §1) made of these steps and evals."""
        fields.setdefault("sources", self.sources)
        fields["notes"] = fields.get("notes", []) + self.notes
        return Run(
            name=folder.name,
            study=study,
            source=folder,
            steps=self.steps,
            evals=self.evals,
            config=config,
            format=format,
            nan_steps=self.nan_steps,
            **fields,
        )


def assemble(path: Path, records: Table, keys: KeyMap = DEFAULT_KEYS, what: str = "keys",
             line_of: Callable[[str], int | None] | None = None) -> Assembled:
    """Map raw records (a ``step`` column plus logged keys) onto a Run's ``steps`` and ``evals``.

    ``records.frame["step"]`` must already be checked (whole numbers >= 0).
    Rows that carry the training loss become steps; other step-level values
    (an lr logged on its own row) join them at the same step. Two keys that
    differ only in case (``Loss``, ``loss``) are an error at ``line_of(key)``
    (the line where the second is first seen), since only one of them could
    be read, unless the user named the one to read (``--loss-key``).
    """
    frame = records.frame
    columns = [c for c in frame.columns if c != "step"]
    roles = classify(columns, keys)
    loss = roles.step.get("loss")
    if loss is None:
        shown = ", ".join(columns[:12]) + (" ..." if len(columns) > 12 else "") or "none"
        hint = f"--loss-key {keys.loss!r} is not among them" if keys.loss else "name it with --loss-key"
        raise LogError(path, f"no training loss among the {what} ({shown}): {hint}")
    twin_notes = _left_out_twins(path, roles, keys, what, line_of)

    present = {c: logged_rows(records, c) for c in columns}
    step_columns = [roles.step[r] for r in STEP_ROLES if r in roles.step] + roles.extras
    renamed = {roles.step[r]: r for r in STEP_ROLES if r in roles.step}
    kept = ["step"] + step_columns
    kept_nan = {name: rows for name, rows in records.nan_rows.items() if name in kept}
    loss_rows = select_rows(Table(frame[kept], kept_nan, records.notes), present[loss])
    steps_table = Table(loss_rows.frame.rename(columns=renamed), _rename_keys(loss_rows.nan_rows, renamed),
                        loss_rows.notes)
    steps, nan_steps = order_steps(path, steps_table)
    steps = _fill_from_other_rows(steps, frame, present, step_columns, renamed, loss)

    evals = _evals(frame, records, present, roles)
    notes = list(records.notes) + twin_notes  # records.notes holds order_steps' note too
    return Assembled(steps=steps, nan_steps=nan_steps, evals=evals, sources=roles.describe(), notes=notes)


def _left_out_twins(path: Path, roles: Roles, keys: KeyMap, what: str, line_of) -> list[str]:
    """Notes on keys left out beside a twin (``Roles.twins``) that the user named; any other twin is an error."""
    notes = []
    for used, left_out in roles.twins:
        role = next((r for r, column in roles.step.items() if column == used), None)
        if role is not None and used == keys.user_key(role):
            notes.append(f"{path.name}: key {left_out!r} left out: {OPTIONS[role][0]} names {used!r}, "
                         "the same key to diagnose (names are matched ignoring case and punctuation)")
            continue
        hint = f"name the one that holds {OPTIONS[role][1]} with {OPTIONS[role][0]}" if role else "rename one of them"
        raise LogError(path, f"{used!r} and {left_out!r} differ only in case or punctuation, and key names are matched "
                             f"ignoring both: one of these {what} would be left out; {hint}",
                       line=line_of(left_out) if line_of else None)
    return notes


def logged_rows(records: Table, column: str) -> np.ndarray:
    """Rows where ``column`` was logged: a number or a literal NaN."""
    mask = records.frame[column].notna().to_numpy()
    rows = records.nan_rows.get(column)
    if rows is not None and len(rows):
        mask = mask.copy()
        mask[rows] = True
    return mask


def _rename_keys(nan_rows: dict, renamed: dict) -> dict:
    return {renamed.get(name, name): rows for name, rows in nan_rows.items()}


def _fill_from_other_rows(steps, frame, present, step_columns, renamed, loss) -> pd.DataFrame:
    """An lr or grad norm logged on a row of its own joins the loss row of the same step."""
    other = ~present[loss]
    if not other.any() or steps.empty:
        return steps
    for column in step_columns:
        rows = other & present[column]
        if not rows.any():
            continue
        values = pd.Series(frame[column].to_numpy()[rows], index=frame["step"].to_numpy()[rows])
        values = values[~values.index.duplicated(keep="last")]
        target = renamed.get(column, column)
        fill = steps["step"].map(values)
        steps[target] = steps[target].where(steps[target].notna(), fill)
    return steps


def _evals(frame, records, present, roles: Roles) -> pd.DataFrame:
    """One row per (step, split) where any metric of that split was logged; the last value of a step wins."""
    steps = frame["step"].to_numpy()
    by_split: dict[str, dict[str, str]] = {}
    for (split, metric), column in roles.evals.items():
        by_split.setdefault(split, {})[metric] = column
    parts = []
    for split, metrics in by_split.items():
        logged = np.zeros(len(steps), dtype=bool)
        for column in metrics.values():
            logged |= present[column]
        if not logged.any():
            continue
        split_steps = np.unique(steps[logged])
        columns = {"step": split_steps, "split": np.full(len(split_steps), split, dtype=object)}
        for metric, column in metrics.items():
            rows = np.flatnonzero(present[column])
            values = np.full(len(split_steps), np.nan)
            if len(rows):
                last = last_per_step(steps[rows])
                values[np.searchsorted(split_steps, steps[rows][last])] = frame[column].to_numpy()[rows][last]
            columns[metric] = values
        parts.append(pd.DataFrame(columns))
    if not parts:
        return empty_evals()
    evals = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    if "loss" not in evals.columns:
        evals["loss"] = np.nan
    ordered = ["step", "split", "loss"] + sorted(c for c in evals.columns if c not in ("step", "split", "loss"))
    evals = evals[ordered].astype({"step": "int64"})
    return evals.sort_values(["step", "split"], kind="stable").reset_index(drop=True)


def last_per_step(steps: np.ndarray) -> np.ndarray:
    """Indices of the last occurrence of each distinct step, in step order."""
    _, first_from_end = np.unique(steps[::-1], return_index=True)
    return len(steps) - 1 - first_from_end
