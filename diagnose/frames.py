"""Three pandas internals that the hot paths use for speed, each tried once against the public way.

On a run of 1,000 steps pandas' per-call checks and wrappers cost more than
its data: building a frame from columns (~0.1 ms), a Series around each
column read (~20 us) and pyarrow's conversion of a cached table (~0.2 ms).
``frame``, ``column`` and ``from_arrow`` skip them. The internals are not
public API and change between pandas versions (``arrays_to_mgr`` wants a
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


def from_arrow(batch) -> pd.DataFrame:
    """``batch.to_pandas(use_threads=False, split_blocks=True)`` of an Arrow record batch, the same frame."""
    return _arrow_reader()(batch)


def _public_frame(columns: dict) -> pd.DataFrame:
    return pd.DataFrame(columns, copy=False)


def _internal_frame(columns: dict) -> pd.DataFrame:
    arrays = list(columns.values())
    manager = _arrays_to_mgr()(arrays, _labels(tuple(columns)), _rows(len(arrays[0])), verify_integrity=False,
                               consolidate=False)
    return pd.DataFrame._from_mgr(manager, axes=manager.axes)


@functools.cache  # imported once, not on each frame (~2 us of ~20)
def _arrays_to_mgr():
    from pandas.core.internals.construction import arrays_to_mgr

    return arrays_to_mgr


# An Index is immutable: one per header and one per length, shared between frames as pandas does.
@functools.lru_cache(maxsize=1000)
def _labels(names: tuple[str, ...]) -> pd.Index:
    return pd.Index(list(names))


@functools.lru_cache(maxsize=1000)
def _rows(length: int) -> pd.RangeIndex:
    return pd.RangeIndex(length)


def _public_column(table: pd.DataFrame, position: int):
    series = table.iloc[:, position]
    return series.array if isinstance(series.dtype, ExtensionDtype) else series.to_numpy()


def _internal_column(table: pd.DataFrame, position: int):
    return table._get_column_array(position)


def _public_from_arrow(batch) -> pd.DataFrame:
    return batch.to_pandas(use_threads=False, split_blocks=True)


def _internal_from_arrow(batch) -> pd.DataFrame:
    """``frame`` of the batch's columns as ``to_pandas`` gives them; ``to_pandas`` for anything else.

    Numbers without nulls are numpy's read-only views of the Arrow data, strings pandas' own ``str`` array
    of it. A batch with pandas' metadata (object columns, written by ``from_pandas``) or with other columns
    (nulls, bools, float16, dates...), or no rows, or a repeated name is ``to_pandas``'.
    """
    if batch.schema.metadata is None and batch.num_rows:
        numbers, strings, str_dtype = _arrow_types()
        columns = {}
        for name, array in zip(batch.schema.names, batch.columns):
            kind = array.type
            if name in columns:
                break
            if kind in numbers and not array.null_count:
                columns[name] = array.to_numpy()
            elif kind in strings:
                columns[name] = str_dtype.__from_arrow__(array)
            else:
                break
        else:
            return frame(columns)
    return _public_from_arrow(batch)


@functools.cache
def _arrow_types() -> tuple:
    import pyarrow as pa  # only a reader of cached tables, which has it already

    numbers = {pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64(),
               pa.float32(), pa.float64()}
    # what pyarrow makes of Arrow strings in pandas 3
    return numbers, {pa.string(), pa.large_string()}, pd.StringDtype(na_value=np.nan)


def _sample() -> dict:
    return {
        "step": np.arange(3, dtype=np.int64),
        "loss": np.array([1.0, np.nan, np.inf]),
        "split": pd.Series(np.array(["valid", "train", "valid"], dtype=object)).array,
    }


@functools.cache
def _frame_builder():
    return _chosen(_internal_frame, _public_frame,
                   lambda: _same_frame(_internal_frame(_sample()), _public_frame(_sample())))


@functools.cache
def _column_reader():
    table = _public_frame(_sample())
    return _chosen(_internal_column, _public_column, lambda: all(
        _same(_internal_column(table, i), _public_column(table, i)) for i in range(table.shape[1])))


@functools.cache
def _arrow_reader():
    return _chosen(_internal_from_arrow, _public_from_arrow, lambda: all(
        _same_frame(_internal_from_arrow(batch), _public_from_arrow(batch)) for batch in _arrow_samples()))


def _chosen(internal, public, alike):
    """``internal`` where ``alike()`` finds it answers as ``public`` does on samples, else ``public``."""
    try:
        if alike():
            return internal
    except Exception:  # noqa: BLE001 - another pandas: its public way
        pass
    return public


def _arrow_samples() -> list:
    import pyarrow as pa

    numbers = pa.RecordBatch.from_arrays(
        [pa.array(np.arange(3)), pa.array(np.array([1.0, np.nan, -np.inf], dtype=np.float32)),
         pa.array(np.array([0, 1, 255], dtype=np.uint8))], names=["step", "loss", "clipped"])
    strings = pa.RecordBatch.from_arrays(
        [pa.array(["valid", None, "train"], pa.large_string()), pa.array(["a", "b", None], pa.string()),
         pa.array(np.array([0.5, np.nan, 2.0]))], names=["split", "other", "loss"])
    return [numbers, strings]


def _same_frame(got: pd.DataFrame, expected: pd.DataFrame) -> bool:
    """The same frame, down to its blocks and which of its columns' arrays are writeable."""
    try:
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
    except AssertionError:
        return False
    return (got.columns.dtype == expected.columns.dtype and repr(got._mgr) == repr(expected._mgr)
            and _writeable(got) == _writeable(expected))


def _writeable(table: pd.DataFrame) -> list:
    return [getattr(getattr(block.values, "flags", None), "writeable", None) for block in table._mgr.blocks]


def _same(got, expected) -> bool:
    return type(got) is type(expected) and got.dtype == expected.dtype and pd.Series(got).equals(pd.Series(expected))
