"""The tables that ``read_columns`` and ``frame`` build are the ones pandas builds from the same values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from diagnose.readers.table import frame, read_columns


def assert_same_frame(built: pd.DataFrame, expected: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(built, expected, check_exact=True)
    assert list(built.dtypes) == list(expected.dtypes)
    assert repr(built._mgr) == repr(expected._mgr)  # one block per column, in the same order


@pytest.mark.parametrize("rows", [0, 1, 5])
def test_frame_is_the_frame_pandas_builds_from_the_columns(rows):
    strings = np.array([f"s{i}" for i in range(rows)], dtype=object)
    columns = {"step": np.arange(rows, dtype=np.int64), "loss": np.linspace(0, 1, rows), "split": strings,
               "lr": np.full(rows, np.nan)}
    held = dict(columns, split=pd.Series(strings).array)  # frame takes arrays as pandas holds them
    assert_same_frame(frame(held), pd.DataFrame(columns, copy=False))


@pytest.mark.parametrize("cells", [["valid", "test"], ["valid", ""], ["", ""], []])
def test_a_text_column_is_held_as_pandas_infers_it_from_its_strings(tmp_path, cells):
    path = tmp_path / "evals.csv"
    path.write_text("step,split,loss\n" + "".join(f"{i},{cell},1\n" for i, cell in enumerate(cells)))
    columns, _, _ = read_columns(path, required=("step", "split"), numeric=("loss",), text=("split",), step="step")
    strings = np.array([cell or None for cell in cells], dtype=object)
    expected = pd.DataFrame({"step": np.arange(len(cells)), "split": strings, "loss": np.ones(len(cells))})
    assert_same_frame(frame(columns), expected)
