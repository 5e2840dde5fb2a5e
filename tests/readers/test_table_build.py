"""The tables that ``read_columns`` and ``frame`` build are the ones pandas builds from the same values."""

from __future__ import annotations

import pickle

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


PLAIN = ["0", "1", "-0", "-0.0", "2.50", "-3.25e-7", "1e5", "1E+05", "0.1000000000000000055511151231257827",
         "9007199254740993", "nan", "inf", "-inf", ""]
NUMBERS = PLAIN + ["007", "1.", ".5", "1e999", "1e-400", "+1", "123456789012345678901234567890", "NaN", "-nan",
                   "Infinity", " 1", "1 ", "1_000", "0x10", "abc", "true"]
TEXTS = ["valid", "test", "", " val", "välid", "测试", "a b", "nan", "1"]


def random_csv(rng) -> str:
    """A small evals-like file, mostly plain, sometimes with what only pyarrow reads (or refuses)."""
    header = ["step", "split", "loss"] + (["acc"] if rng.random() < 0.3 else [])
    if rng.random() < 0.2:
        header = list(rng.permutation(header))
    lines = [",".join(header)]
    for row in range(int(rng.integers(0, 6))):
        cells = {"step": str(row) if rng.random() < 0.95 else str(rng.choice(NUMBERS)),
                 "split": str(rng.choice(TEXTS)),
                 "loss": str(rng.choice(PLAIN if rng.random() < 0.8 else NUMBERS)),
                 "acc": str(rng.choice(PLAIN if rng.random() < 0.8 else NUMBERS))}
        lines.append(",".join(cells[name] for name in header))
    odd = rng.random()
    if odd < 0.05:
        lines.insert(int(rng.integers(1, len(lines) + 1)), "")
    elif odd < 0.1:
        lines.append("0,valid")
    elif odd < 0.13:
        lines[-1] = lines[-1] + ","
    end = "\r\n" if rng.random() < 0.05 else "\n"
    text = end.join(lines) + (end if rng.random() < 0.9 else "")
    if rng.random() < 0.05:
        text = text.replace("valid", '"val,id"')
    return text


def outcome(path, **options):
    try:
        columns, nan_rows, notes = read_columns(path, required=("step", "split"), text=("split",), step="step", **options)
    except Exception as error:  # LogError with its line, or a bug: either must be the same
        return type(error).__name__, str(error)
    # pickled: dtypes, and every bit of the values (a NaN equals a NaN, -0.0 is not 0.0)
    return ({name: pickle.dumps(values) for name, values in columns.items()},
            {name: rows.tolist() for name, rows in nan_rows.items()}, notes)


@pytest.mark.parametrize("numeric", [("loss",), ("loss", "acc")])
def test_a_small_file_read_without_pyarrow_is_read_as_pyarrow_reads_it(tmp_path, monkeypatch, numeric):
    rng = np.random.default_rng(len(numeric))
    path = tmp_path / "evals.csv"
    for _ in range(600):
        path.write_bytes(random_csv(rng).encode())
        small = outcome(path, numeric=numeric)
        with monkeypatch.context() as patch:
            patch.setattr("diagnose.readers.table.SMALL_FILE", -1)
            assert small == outcome(path, numeric=numeric), path.read_text()
