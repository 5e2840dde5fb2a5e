"""Plain CSV logs with a step and a loss column, and Weights & Biases CSV exports.

A CSV whose header names a step (``step``, ``global_step``, ``iteration``,
W&B's ``_step`` or ``Step``) and a training loss (``loss``, ``train_loss``,
``train/loss``, ...) is one run; its other columns are mapped like every
other log's keys (``val_loss`` an evaluation, ``lr``, ``grad_norm``). A W&B
chart export names its columns ``<run> - <metric>`` with ``__MIN`` /
``__MAX`` companions: the companions are left out and the run name is
stripped. The table is parsed by pyarrow (``table.py``), so a CSV of any size
is read at C speed with an exact line for every error.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from ..errors import LogError
from ..model import Run
from .folders import files_in, one_log
from .keys import DEFAULT_KEYS, KeyMap, classify, find_step_column

# The table code (pandas, pyarrow: ``records``, ``table``) is imported where a run's tables are built:
# sniffing the folders of a re-run that the cache serves then imports none of it (0.3 s).

FORMAT = "csv"
WANDB_FORMAT = "wandb.csv"
SUFFIXES = (".csv",)
INDEX_COLUMN = "index"  # pandas' unnamed index column, as in a W&B run.history().to_csv()
WANDB_COLUMN = re.compile(r"(?P<run>.+?) - (?P<metric>.+?)(?P<band>__MIN|__MAX)?")


def sniff(folder: Path, keys: KeyMap = DEFAULT_KEYS) -> bool:
    return bool(log_files(folder, keys))


def log_files(folder: Path, keys: KeyMap = DEFAULT_KEYS) -> list[Path]:
    """CSV files directly in ``folder`` whose header names a step and a training loss."""
    candidates = files_in(folder, lambda name: os.path.splitext(name)[1].lower() in SUFFIXES)
    return [path for path in candidates if _header_plan(_header(path), keys) is not None]


def _header(path: Path) -> list[str]:
    try:
        with open(path, "rb") as handle:
            line = handle.readline(1 << 20)
        text = line.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return []
    if "\0" in text:
        return []
    try:
        return [name.strip() for name in next(csv.reader([text]), [])]
    except csv.Error:
        return []


def _header_plan(header: list[str], keys: KeyMap) -> tuple[str, dict[str, str], list[str]] | None:
    """(step column, {raw column: metric name}, W&B runs) when the header is a loss log, else None."""
    step = find_step_column(header, keys)
    if step is None:
        return None
    names: dict[str, str] = {}
    runs: list[str] = []
    for column in header:
        match = WANDB_COLUMN.fullmatch(column)
        if column == step or not column:
            continue
        if match:
            if match.group("band"):
                continue
            if match.group("run") not in runs:
                runs.append(match.group("run"))
            names[column] = match.group("metric")
        else:
            names[column] = column
    if not classify(list(names.values()), keys).step.get("loss"):
        return None
    return step, names, runs


def read(folder: Path, study: str, keys: KeyMap = DEFAULT_KEYS) -> Run:
    """The run whose CSV log lies in ``folder`` (one log per folder)."""
    from .records import assemble
    from .table import Table, read_table

    path = one_log(folder, log_files(folder, keys), "CSV logs")
    step, names, wandb_runs = _header_plan(_header(path), keys)
    if len(wandb_runs) > 1:
        shown = ", ".join(wandb_runs[:5]) + (" ..." if len(wandb_runs) > 5 else "")
        raise LogError(path, f"a W&B export of {len(wandb_runs)} runs ({shown}): export each run to a folder of its own",
                       line=1)
    roles = classify(list(names.values()), keys)
    used = set(roles.step.values()) | set(roles.evals.values())
    numeric = tuple(raw for raw, name in names.items() if name in used)  # an error at its line, not left out
    table = read_table(path, required=(step,), numeric=numeric, index_column=INDEX_COLUMN, step=step)
    frame = table.frame[[step] + [c for c in names if c in table.frame.columns]]
    renamed = {step: "step", **names}
    _one_column_per_name(path, renamed, keys)
    frame = frame.rename(columns=renamed)
    nan_rows = {renamed[c]: rows for c, rows in table.nan_rows.items() if c in renamed}
    parts = assemble(path, Table(frame=frame, nan_rows=nan_rows, notes=table.notes), keys,
                     what=f"columns of {path.name}", line_of=lambda key: 1)
    config = {"wandb_run": wandb_runs[0]} if wandb_runs else {}
    return parts.run(
        folder,
        study,
        format=WANDB_FORMAT if wandb_runs or step == "_step" else FORMAT,
        config=config,
        sources={role: _original(column, names) for role, column in parts.sources.items()},
    )


def _one_column_per_name(path: Path, renamed: dict[str, str], keys: KeyMap) -> None:
    """Records keep one column per name: two columns read under one name would lose one (an error at the header)."""
    seen: dict[str, str] = {}
    for column, name in renamed.items():
        if name not in seen:
            seen[name] = column
        elif name == "step" and keys.step is not None:
            # as Lightning's own 'step' beside --step-key (lightning.read)
            raise LogError(path, f"--step-key {keys.step!r} names the step column, but the column {column!r} would "
                                 "then be lost: leave out --step-key", line=1)
        else:
            raise LogError(path, f"columns {seen[name]!r} and {column!r} would both be read as {name!r}: "
                                 "rename one of them", line=1)


def _original(metric: str, names: dict[str, str]) -> str:
    return next((raw for raw, name in names.items() if name == metric), metric)
