"""What one training run and one study are, in memory.

Every reader (the native run directory, Hugging Face, Lightning, TensorBoard,
plain CSV and text logs) produces these, so the checks never know which file a
number came from. A run's tables are pandas DataFrames, but pandas is imported
only where one is built: a re-run that the cache serves whole builds none, and
importing pandas (0.3 s) would be most of its time.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

VALID_SPLITS = frozenset({"valid", "val", "validation", "eval", "dev", "test"})
TRAIN_SPLITS = frozenset({"train", "training"})

ROLES = ("train", "short", "lr_range")
STATUSES = ("running", "finished", "diverged", "crashed", "interrupted")


def empty_steps() -> pd.DataFrame:
    import pandas as pd  # see the module docstring

    return pd.DataFrame({"step": pd.Series(dtype="int64"), "loss": pd.Series(dtype="float64")})


def empty_evals() -> pd.DataFrame:
    import pandas as pd  # see the module docstring

    return pd.DataFrame(
        {
            "step": pd.Series(dtype="int64"),
            "split": pd.Series(dtype="object"),
            "loss": pd.Series(dtype="float64"),
        }
    )


@dataclass(eq=False)
class Run:
    """One training run.

    ``steps`` has one row per logged optimizer step, sorted by ``step`` (int64)
    with float64 columns ``loss`` and, where logged, ``grad_norm``, ``lr``,
    ``momentum``, ``time``, ``clip_norm``, ``clipped``, ``skipped`` and any
    extra numeric column. A missing value is NaN; a value that the log itself
    wrote as ``nan`` is NaN too and its step is listed in ``nan_steps`` (so a
    NaN loss is told apart from a loss that was not logged).
    ``evals`` has one row per evaluation: ``step``, ``split``, ``loss`` and
    further metrics.
    """

    name: str
    study: str
    source: Path
    steps: pd.DataFrame = field(default_factory=empty_steps)
    evals: pd.DataFrame = field(default_factory=empty_evals)
    role: str = "train"
    config: dict = field(default_factory=dict)
    status: str | None = None
    format: str = "diagnose.run/1"
    notes: list[str] = field(default_factory=list)
    nan_steps: dict[str, np.ndarray] = field(default_factory=dict)
    # Which logged key each column was read from, for logs in other formats: {"loss": "train/loss", ...}
    sources: dict[str, str] = field(default_factory=dict)

    @classmethod
    def with_tables_later(cls, load_table, **fields) -> Run:
        """A run whose ``steps`` and ``evals`` each come from ``load_table(name)`` when first used.

        A warm report takes runs from the cache and may never need their tables
        (every study of theirs is cached too): reading one is paid only when a
        check or a figure asks for it. ``fields`` are every other field of a run,
        and the values of cached properties already known (``facts``, ``lr``, ...).
        """
        run = cls.__new__(cls)
        run.__dict__.update(fields, _load_table=load_table)
        return run

    def __getattr__(self, name):  # only called for attributes not set: the tables of a lazy run
        load = self.__dict__.get("_load_table") if name in ("steps", "evals") else None
        if load is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        self.__dict__[name] = load(name)
        return self.__dict__[name]

    @property
    def key(self) -> str:
        """Unique within a log root: ``study/name``."""
        return f"{self.study}/{self.name}"

    @property
    def n_steps(self) -> int:
        return len(self.steps)

    @property
    def last_step(self) -> int | None:
        steps = self.steps
        return int(self.column(steps, "step")[-1]) if len(steps) else None

    def has(self, column: str) -> bool:
        """True when the column exists and holds at least one value."""
        if column != "step" and "steps" not in self.__dict__ and "facts" in self.__dict__:
            return column in self.facts["columns"]  # a cached run whose tables were not needed yet
        steps = self.steps
        return self._once_per_table(
            steps, ("has", column), lambda: column in _positions(steps) and self._holds_values(steps, column)
        )

    def has_valid_evals(self) -> bool:
        """True when the run has a validation eval (``valid_evals`` is not empty), from ``facts``."""
        return self.facts["valid_evals"] > 0

    @cached_property
    def facts(self) -> dict:
        """What the tables hold, in brief: row counts, logged columns, validation evals.

        A run from the cache brings them along, so the findings document and
        the choice of figures cost no table read.
        """
        return {
            "steps": self.n_steps,
            "last_step": self.last_step,
            "evals": len(self.evals),
            "columns": [c for c in self.steps.columns if c != "step" and self.has(c)],
            "valid_evals": len(self.valid_evals()),
        }

    @cached_property
    def lr(self) -> float | None:
        """The base (peak) learning rate: ``config.lr``, else the largest logged lr."""
        return self._hyper("lr", reduce=np.nanmax)

    @cached_property
    def momentum(self) -> float | None:
        """``config.momentum``, else the median logged momentum."""
        return self._hyper("momentum", reduce=np.nanmedian)

    @property
    def seed(self):
        return self.config.get("seed")

    @property
    def max_steps(self) -> int | None:
        value = self.config.get("max_steps")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return int(value)
        return None

    def evals_for(self, splits: frozenset[str]) -> pd.DataFrame:
        """Eval rows whose split is one of ``splits`` (case-insensitive), by step. Shared: do not modify it."""
        evals = self.evals
        if not len(evals) or not len(evals.columns):  # evals.empty, without its generator (~2 us a call)
            return evals
        rows = self._once_per_table(evals, splits, lambda: self._rows_of_splits(evals, splits))
        return evals if rows is None else rows

    def valid_evals(self) -> pd.DataFrame:
        return self.evals_for(VALID_SPLITS)

    def train_evals(self) -> pd.DataFrame:
        return self.evals_for(TRAIN_SPLITS)

    def updates(self) -> pd.DataFrame:
        """Steps whose update was applied (AMP-skipped steps left out). Shared: do not modify it."""
        steps = self.steps
        if "skipped" in _positions(steps):
            return self._once_per_table(steps, "updates", lambda: steps[steps["skipped"].fillna(0) == 0])
        return steps

    def nonfinite(self, column: str, steps: np.ndarray, values: np.ndarray) -> np.ndarray | bool:
        """Where ``values`` (``column`` at ``steps``) is inf, or NaN as the log wrote it (not a missing value);
        False when nowhere (most runs: told by one pass, without a mask)."""
        written_nan = self.nan_steps.get(column)
        written_nan = written_nan if written_nan is not None and len(written_nan) else None
        if written_nan is None and np.isfinite(values).all():
            return False
        bad = np.isinf(values)
        if written_nan is not None:
            bad |= np.isin(steps, written_nan)
        return bad

    def column(self, table: pd.DataFrame, name: str, dtype=None) -> np.ndarray:
        """``table[name].to_numpy()`` of one of this run's tables (``steps``, ``updates()``, ``valid_evals()``,
        ...) as ``dtype``, found once: the checks read the same few columns many times, ~20 us of pandas a
        time. Shared: do not modify it."""
        values = self._once_per_table(table, (id(table), name), lambda: self._values_of(table, name))
        return values if dtype is None else values.astype(dtype, copy=False)  # a float column is not copied

    def _values_of(self, table, name: str) -> np.ndarray:
        """``table[name].to_numpy()``, from the column's own array: the Series pandas builds around it costs
        ~20 us, the largest fixed cost of the checks on a short run. Read-only, as pandas gives it."""
        position = _positions(table).get(name)
        if position is not None:  # (a missing or repeated name: pandas' answer)
            values = _frames().column(table, position)
            if isinstance(values, np.ndarray):
                values = values.view()
                values.flags.writeable = False
                return values
            if not isinstance(values.dtype, np.dtype):  # an extension array (strings): what Series.to_numpy calls
                return values.to_numpy()
        return table[name].to_numpy()

    def _once_per_table(self, table, question, answer):
        """``answer()`` found once per table object: the checks ask a run the same ``question`` many times
        (``has``, ``valid_evals``, ``updates``: up to ~1 ms of pandas a time). Weakly held, and forgotten when
        the table goes, so that a run letting its tables go (``RunCache.tables_later``) frees them (a column's
        array would keep the table's data)."""
        memo = self.__dict__.get("_memo")
        if memo is None:
            memo = self.__dict__["_memo"] = {}
        return once_per_object(memo, table, question, answer)

    def __getstate__(self) -> dict:
        """What a worker process sends: everything but the memo (weak references do not pickle)."""
        return {name: value for name, value in self.__dict__.items() if name != "_memo"}

    def _rows_of_splits(self, evals: pd.DataFrame, splits: frozenset[str]) -> pd.DataFrame | None:
        """``evals``' rows whose split is one of ``splits`` (case-insensitive), sorted by step (stable); None when
        they are ``evals`` itself (a copy, even a shallow one, costs 15-30 us; and the memo must not hold the table).

        Plain Python on each row's split, rows taken only when some are left out and sorted only when out of
        order: an eval table is small, and pandas' string methods, row selection and sort cost ~1 ms on one
        of any size (most tables are all one split, or hold none of ``splits``).
        """
        split, steps = self.column(evals, "split"), self.column(evals, "step")
        wanted = [str(name).lower() in splits for name in split.tolist()]
        if all(wanted):
            rows = evals
        elif not any(wanted):
            rows, split, steps = evals.iloc[:0], split[:0], steps[:0]
        else:
            wanted = np.array(wanted)
            rows, split, steps = evals[wanted], split[wanted], steps[wanted]
        if (steps[1:] < steps[:-1]).any():
            return rows.sort_values("step", kind="stable")
        if rows is evals:
            return None
        positions = _positions(evals)  # the checks ask for these: not through pandas again (rows have their own Index)
        once_per_object(_POSITIONS, rows.columns, id(rows.columns), lambda: positions)
        for name, values in (("split", split), ("step", steps)):
            self._once_per_table(rows, (id(rows), name), lambda values=values: values)
        return rows

    def _holds_values(self, table: pd.DataFrame, name: str) -> bool:
        values = self.column(table, name)
        if values.dtype.kind == "f":  # numpy's isnan: pandas' notna costs ~20x more on a long run
            if values.ndim == 1 and len(values) and values[0] == values[0]:
                return True  # a first value that is not NaN tells, without a pass over the column (most columns)
            return not np.isnan(values).all()
        return bool(table[name].notna().any())

    def _hyper(self, key: str, reduce) -> float | None:
        value = self.config.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
            return float(value)
        if self.has(key):
            return float(reduce(self.column(self.steps, key)))
        return None


@functools.cache  # (an import statement in _values_of costs a call into importlib each time)
def _frames():
    from . import frames  # pandas is imported where a table was built: see the module docstring

    return frames


# Column positions by the columns Index they are of (``_positions``), weakly held as a run's memo is.
_POSITIONS: dict = {}


def _positions(table) -> dict:
    """``table``'s column names and their positions (None for a repeated name), found once per columns Index:
    iterating an Index of strings costs ~30 us of pandas on a short run, and the readers give the tables of one
    header the same Index (``frames.frame``), so a worker pays it once per header, not twice per run."""
    columns = table.columns
    return once_per_object(_POSITIONS, columns, id(columns), lambda: _positions_of(columns))


def _positions_of(columns) -> dict:
    positions = {}
    for i, name in enumerate(columns):
        positions[name] = None if name in positions else i
    return positions


def once_per_object(memo: dict, holder, question, answer):
    """``answer()`` found once per ``holder`` object and kept in ``memo`` under ``question``; weakly held, and
    forgotten when the holder goes."""
    held = memo.get(question)
    if held is not None and held[0]() is holder:
        return held[1]
    value = answer()

    def forget(gone):
        if memo.get(question, (None,))[0] is gone:
            del memo[question]

    memo[question] = (weakref.ref(holder, forget), value)
    return value


@dataclass(eq=False)
class Study:
    """Runs that are compared with each other: an lr sweep, a seed swarm, ..."""

    name: str
    runs: list[Run]

    @cached_property
    def varying(self) -> dict[str, list]:
        """Config keys whose values differ between the runs, with their sorted values."""
        keys = {key for run in self.runs for key in run.config}
        varying = {}
        for key in sorted(keys):
            values = {_hashable(run.config.get(key)) for run in self.runs}
            if len(values) > 1:
                varying[key] = sorted(values, key=_order)
        return varying

    def by_role(self, role: str) -> list[Run]:
        return [run for run in self.runs if run.role == role]


def _order(value):
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return (value is None, not is_number, value if is_number else 0, str(value))


def _hashable(value):
    if isinstance(value, (list, dict)):
        return repr(value)
    return value
