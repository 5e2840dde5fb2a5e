"""Run: answers the checks ask many times are found once per table, and never outlive it."""

from __future__ import annotations

import gc
import pickle
import weakref

import numpy as np
import pandas as pd
import pytest

from diagnose import model
from diagnose.model import Run


def a_run() -> Run:
    steps = pd.DataFrame({"step": [0, 1, 2], "loss": [1.0, 0.5, 0.25], "grad_norm": [float("nan")] * 3})
    evals = pd.DataFrame({"step": [2, 0, 2], "split": ["Valid", "valid", "train"], "loss": [0.4, 0.9, 0.3]})
    return Run(name="r", study="s", source=None, steps=steps, evals=evals)


def test_valid_evals_are_found_once_and_again_for_a_new_table():
    run = a_run()
    first = run.valid_evals()
    assert first["step"].tolist() == [0, 2] and run.valid_evals() is first
    run.evals = pd.DataFrame({"step": [5], "split": ["val"], "loss": [0.1]})
    assert run.valid_evals()["step"].tolist() == [5]


def test_has_is_found_once_and_again_for_a_new_table():
    run = a_run()
    assert run.has("loss") and not run.has("grad_norm") and not run.has("lr")
    run.steps = run.steps.assign(grad_norm=[1.0, 2.0, 3.0])
    assert run.has("grad_norm")


def test_a_run_sent_to_another_process_carries_no_memo_and_answers_the_same():
    run = a_run()
    run.valid_evals(), run.has("loss")
    copy = pickle.loads(pickle.dumps(run))
    assert "_memo" not in copy.__dict__
    assert copy.valid_evals().equals(run.valid_evals()) and copy.has("loss")


@pytest.mark.parametrize("splits", [["Valid", "valid", "train"], ["valid", "val", "eval"]])  # some rows valid, or all
def test_the_memo_does_not_keep_a_dropped_table_alive(splits):
    run = a_run()
    run.evals = run.evals.assign(split=splits).sort_values("step")
    run.has("loss"), run.valid_evals(), run.column(run.valid_evals(), "loss")
    tables = weakref.ref(run.steps), weakref.ref(run.evals)
    del run.__dict__["steps"], run.__dict__["evals"]
    gc.collect()
    assert tables[0]() is None and tables[1]() is None


def test_columns_are_found_once_per_table_and_forgotten_with_it():
    run = a_run()
    loss = run.column(run.steps, "loss")
    assert loss.tolist() == [1.0, 0.5, 0.25] and run.column(run.steps, "loss") is loss
    assert run.column(run.steps, "step", float).dtype == float and run.last_step == 2
    valid = run.valid_evals()
    assert run.column(valid, "step").tolist() == [0, 2] and run.column(valid, "split").tolist() == ["valid", "Valid"]
    assert run.column(valid, "loss").tolist() == [0.9, 0.4]
    run.steps = run.steps.assign(loss=[3.0, 2.0, 1.0])
    assert run.column(run.steps, "loss").tolist() == [3.0, 2.0, 1.0]
    gone = weakref.ref(loss)
    del loss, valid, run.__dict__["steps"], run.__dict__["evals"]
    gc.collect()
    assert gone() is None and not run.__dict__["_memo"]


def test_evals_of_some_splits_are_every_such_row_by_step_in_table_order_among_equal_steps():
    evals = pd.DataFrame(
        {"step": [5, 1, 5, 1], "split": ["valid", "VAL", "Validation", "train"], "loss": [0.5, 0.1, 0.6, 0.2]}
    )
    run = Run(name="r", study="s", source=None, evals=evals)
    assert run.valid_evals()["loss"].tolist() == [0.1, 0.5, 0.6]
    assert run.train_evals()["loss"].tolist() == [0.2]
    only_test = Run(name="r", study="s", source=None, evals=evals.sort_values("step").assign(split="test"))
    assert only_test.valid_evals() is only_test.evals  # every row: the table itself (shared: never modified)
    assert only_test.train_evals().empty and list(only_test.train_evals().columns) == ["step", "split", "loss"]


def test_updates_leave_skipped_steps_out_once_per_table():
    run = a_run()
    run.steps = run.steps.assign(skipped=[0.0, 1.0, float("nan")])
    applied = run.updates()
    assert applied["step"].tolist() == [0, 2] and run.updates() is applied
    run.steps = run.steps.assign(skipped=0.0)
    assert run.updates()["step"].tolist() == [0, 1, 2]


def test_columns_are_pandas_own_arrays_read_only():
    table = pd.DataFrame({
        "step": np.arange(3), "loss": [1.0, np.nan, 0.5], "split": pd.array(["a", None, "b"], dtype="str"),
        "tag": pd.Series(["x", 1, None], dtype=object), "when": pd.date_range("2024-01-01", periods=3),
        "n": pd.array([1, None, 3], dtype="Int64"),
    })
    run = Run(name="r", study="s", source=None, steps=table)
    for name in table.columns:
        values, expected = run.column(table, name), table[name].to_numpy()
        assert values.dtype == expected.dtype and values.shape == expected.shape
        assert values.flags.writeable <= expected.flags.writeable  # a numpy column: read-only, as copy-on-write gives it
        assert pd.isna(values).tolist() == pd.isna(expected).tolist()
        assert [v for v in values.tolist() if not pd.isna(v)] == [v for v in expected.tolist() if not pd.isna(v)]
    with pytest.raises(KeyError):
        run.column(table, "lr")
    twice = pd.DataFrame([[1.0, 2.0]], columns=["loss", "loss"])  # duplicate names: what pandas gives
    assert run.column(twice, "loss").tolist() == [[1.0, 2.0]]


def test_tables_of_one_header_share_its_positions_which_go_with_it():
    columns = pd.Index(["step", "loss", "lr"])
    tables = [pd.DataFrame(np.ones((3, 3)), columns=columns) for _ in range(2)]
    assert tables[0].columns is tables[1].columns  # as the readers build them (frames.frame)
    assert model._positions(tables[0]) is model._positions(tables[1]) == {"step": 0, "loss": 1, "lr": 2}
    key = id(columns)
    del tables, columns
    gc.collect()
    assert key not in model._POSITIONS


def test_a_column_holds_values_when_any_is_not_nan():
    run = a_run()
    run.steps = run.steps.assign(grad_norm=[float("nan"), 2.0, float("nan")], lr=[0.1, 0.1, 0.1])
    assert run.has("grad_norm") is True and run.has("lr") is True
    assert Run(name="r", study="s", source=None).has("loss") is False  # no rows
