"""Two pandas internals that the hot paths use for speed, each tried once against the public way.

On a run of 1,000 steps pandas' per-call checks and wrappers cost more than
its data: building a frame from columns (~0.1 ms) and a Series around each
column read (~20 us). ``frame`` and ``column`` skip them. The internals are
not public API and change between pandas versions (``arrays_to_mgr`` wants a
``typ`` in pandas 2.2), so each is tried on a small sample the first time it
is needed; if it is missing, raises or answers differently, the public call is
used from then on.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
from pandas.api.extensions import ExtensionDtype


def frame(columns: dict) -> pd.DataFrame:
    """``pd.DataFrame(columns, copy=False)`` of 1-d arrays of one length: one block per column, no copy."""
    return _frame_builder()(columns)


def column(table: pd.DataFrame, position: int):
    """The array of ``table``'s column at ``position``: numpy's, or pandas' extension array (strings), no Series."""
    return _column_reader()(table, position)


def _public_frame(columns: dict) -> pd.DataFrame:
    return pd.DataFrame(columns, copy=False)


def _internal_frame(columns: dict) -> pd.DataFrame:
    from pandas.core.internals.construction import arrays_to_mgr

    names = tuple(columns)
    labels = _LABELS.get(names)
    if labels is None:  # an Index is immutable: one per header, shared between frames as pandas does
        labels = pd.Index(list(names))
        if len(_LABELS) < 1000:
            _LABELS[names] = labels
    arrays = list(columns.values())
    manager = arrays_to_mgr(arrays, labels, pd.RangeIndex(len(arrays[0])), verify_integrity=False, consolidate=False)
    return pd.DataFrame._from_mgr(manager, axes=manager.axes)


_LABELS: dict[tuple[str, ...], pd.Index] = {}


def _public_column(table: pd.DataFrame, position: int):
    series = table.iloc[:, position]
    return series.array if isinstance(series.dtype, ExtensionDtype) else series.to_numpy()


def _internal_column(table: pd.DataFrame, position: int):
    return table._get_column_array(position)


def _sample() -> dict:
    return {
        "step": np.arange(3, dtype=np.int64),
        "loss": np.array([1.0, np.nan, np.inf]),
        "split": pd.Series(np.array(["valid", "train", "valid"], dtype=object)).array,
    }


@functools.cache
def _frame_builder():
    try:
        built, expected = _internal_frame(_sample()), _public_frame(_sample())
        if (built.equals(expected) and built.dtypes.equals(expected.dtypes) and built.columns.equals(expected.columns)
                and built.index.equals(expected.index)):
            return _internal_frame
    except Exception:  # noqa: BLE001 - another pandas: its public way
        pass
    return _public_frame


@functools.cache
def _column_reader():
    table = _public_frame(_sample())
    try:
        if all(_same(_internal_column(table, i), _public_column(table, i)) for i in range(table.shape[1])):
            return _internal_column
    except Exception:  # noqa: BLE001 - another pandas: its public way
        pass
    return _public_column


def _same(got, expected) -> bool:
    return type(got) is type(expected) and got.dtype == expected.dtype and pd.Series(got).equals(pd.Series(expected))
