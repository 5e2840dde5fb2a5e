"""pandas' internals are used only where they answer as pandas' public calls do; otherwise the public calls are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diagnose import frames
from diagnose.readers import discover, read_run
from diagnose.readers.keys import DEFAULT_KEYS

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


@pytest.fixture
def fresh_choice():
    """The choice between internal and public made again (and forgotten after the test)."""
    choices = (frames._frame_builder, frames._column_reader, frames._arrow_reader)
    for choice in choices:
        choice.cache_clear()
    yield
    for choice in choices:
        choice.cache_clear()


def wrong_frame(columns):
    return pd.DataFrame(columns, copy=False).iloc[::-1].reset_index(drop=True)


def failing(*args):
    raise ValueError("'typ' needs to be one of {'block', 'array'}, got 'None'")  # pandas 2.2's arrays_to_mgr


@pytest.mark.parametrize("internal", [failing, wrong_frame])
def test_a_frame_builder_that_fails_or_differs_gives_way_to_pandas_own(fresh_choice, monkeypatch, internal):
    monkeypatch.setattr(frames, "_internal_frame", internal)
    columns = {"step": np.arange(4), "loss": np.array([1.0, np.nan, 3.0, np.inf])}
    pd.testing.assert_frame_equal(frames.frame(columns), pd.DataFrame(columns))
    assert frames._frame_builder() is frames._public_frame


@pytest.mark.parametrize("internal", [failing, lambda table, position: np.zeros(len(table))])
def test_a_column_reader_that_fails_or_differs_gives_way_to_pandas_own(fresh_choice, monkeypatch, internal):
    monkeypatch.setattr(frames, "_internal_column", internal)
    table = pd.DataFrame({"step": np.arange(3), "loss": [0.5, np.nan, 2.0]})
    np.testing.assert_array_equal(frames.column(table, 1), [0.5, np.nan, 2.0])
    assert frames._column_reader() is frames._public_column


def writeable_frame(batch):
    return frames._public_from_arrow(batch).copy()  # the same values, in writeable arrays


@pytest.mark.parametrize("internal", [failing, writeable_frame])
def test_an_arrow_reader_that_fails_or_differs_gives_way_to_pyarrows_own(fresh_choice, monkeypatch, internal):
    import pyarrow as pa

    monkeypatch.setattr(frames, "_internal_from_arrow", internal)
    batch = pa.RecordBatch.from_arrays([pa.array(np.arange(3)), pa.array([0.5, np.nan, 2.0])], names=["step", "loss"])
    table = frames.from_arrow(batch)
    assert frames._arrow_reader() is frames._public_from_arrow
    assert not table._mgr.blocks[0].values.flags.writeable
    pd.testing.assert_frame_equal(table, batch.to_pandas(), check_exact=True)


def test_runs_read_through_the_public_calls_are_the_same_runs(fresh_choice, monkeypatch):
    folders = discover(SAMPLES, DEFAULT_KEYS)
    assert len(folders) > 20

    def tables():
        runs = [read_run(SAMPLES, folder, reader, DEFAULT_KEYS) for folder, reader in folders]
        return [(run.steps, run.evals, {name: run.column(run.steps, name) for name in run.steps.columns})
                for run in runs]

    chosen = tables()
    monkeypatch.setattr(frames, "_internal_frame", failing)
    monkeypatch.setattr(frames, "_internal_column", failing)
    frames._frame_builder.cache_clear()
    frames._column_reader.cache_clear()
    public = tables()
    assert frames._frame_builder() is frames._public_frame and frames._column_reader() is frames._public_column
    for (steps, evals, columns), (public_steps, public_evals, public_columns) in zip(chosen, public):
        pd.testing.assert_frame_equal(steps, public_steps, check_exact=True)
        pd.testing.assert_frame_equal(evals, public_evals, check_exact=True)
        for name, values in columns.items():
            np.testing.assert_array_equal(values, public_columns[name])
            assert values.dtype == public_columns[name].dtype
