"""A CSV parsed in one block or in several gives the same columns; in one, pyarrow's memory is used as is."""

from __future__ import annotations

import numpy as np
import pytest

from diagnose.readers import table
from diagnose.readers.table import read_columns


def write_steps(path, rows: int) -> None:
    rng = np.random.default_rng(7)
    loss = rng.random(rows).round(6).astype(str)
    loss[::997] = "nan"  # literal NaNs, in the first block and in later ones
    grad = rng.random(rows).round(5).astype(str)
    grad[5::1231] = ""  # empty cells: missing, not a NaN row
    lines = [f"{step},{l},{g},0.01" for step, l, g in zip(range(rows), loss, grad)]
    path.write_text("step,loss,grad_norm,lr\n" + "\n".join(lines) + "\n")


def read(path):
    return read_columns(path, required=("step", "loss"), numeric=("grad_norm", "lr"), step="step")


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 64 kB: a file of a few hundred kB is parsed in several."""
    table._plan.cache_clear()
    monkeypatch.setattr(table, "_BLOCK", 1 << 16)
    yield
    table._plan.cache_clear()


def test_a_file_parsed_in_several_blocks_reads_as_in_one(tmp_path, request):
    path = tmp_path / "steps.csv"
    write_steps(path, 20_000)
    one_columns, one_nan_rows, _ = read(path)
    request.getfixturevalue("small_blocks")
    columns, nan_rows, _ = read(path)
    assert list(columns) == list(one_columns)
    for name, values in columns.items():
        assert values.dtype == one_columns[name].dtype
        np.testing.assert_array_equal(values, one_columns[name])
    assert columns["step"].dtype == np.int64
    assert np.isnan(columns["grad_norm"][5::1231]).all()
    assert list(nan_rows) == list(one_nan_rows) == ["loss"]
    np.testing.assert_array_equal(nan_rows["loss"], np.arange(0, 20_000, 997))
    np.testing.assert_array_equal(one_nan_rows["loss"], nan_rows["loss"])


def test_a_file_larger_than_pyarrows_default_block_keeps_its_columns_uncopied(tmp_path):
    # ~1.3 MB: pyarrow's own 1 MB blocks would make two chunks, joined into fresh memory
    path = tmp_path / "steps.csv"
    write_steps(path, 50_000)
    assert path.stat().st_size > 1 << 20
    columns, _, _ = read(path)
    assert columns["loss"].base is not None and not columns["loss"].flags.writeable  # a view of pyarrow's memory
