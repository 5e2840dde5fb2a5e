"""The diagnose.run/1 reader, rule by rule of CONTRACT §1, good files and malformed ones."""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest

from diagnose import LogError, read_root
from diagnose.readers import rundir



def read_one(folder, study="s"):
    return rundir.read(folder, study)


def test_minimal_run_takes_its_defaults_from_the_folders(tmp_path, make_run):
    make_run(tmp_path / "logs" / "sweep" / "lr0.1")
    root = read_root(tmp_path / "logs")
    [run] = root.runs
    assert (run.name, run.study, run.role, run.config, run.status) == ("lr0.1", "sweep", "train", {}, None)
    assert run.steps["step"].tolist() == [0, 1]
    assert run.steps["loss"].tolist() == [1.0, 0.9]
    assert root.unreadable == []


def test_runs_are_found_at_any_depth_and_study_is_the_parent_path(tmp_path, make_run):
    make_run(tmp_path / "a" / "b" / "c" / "run1")
    make_run(tmp_path / "top")
    root = read_root(tmp_path)
    assert sorted((r.study, r.name) for r in root.runs) == [("a/b/c", "run1"), (tmp_path.name, "top")]


def test_the_walk_stops_at_a_run_and_skips_hidden_folders(tmp_path, make_run):
    make_run(tmp_path / "run")
    make_run(tmp_path / "run" / "checkpoint" / "inner")
    make_run(tmp_path / ".cache" / "old")
    assert [r.name for r in read_root(tmp_path).runs] == ["run"]


def test_run_json_names_override_the_folders(tmp_path, make_run):
    make_run(tmp_path / "x" / "y", name="baseline", study="ablation", role="short", config={"lr": 0.3, "seed": 1})
    [run] = read_root(tmp_path).runs
    assert (run.name, run.study, run.role, run.lr, run.seed) == ("baseline", "ablation", "short", 0.3, 1)


def test_unknown_roles_and_config_keys_are_kept(tmp_path, make_run):
    run = read_one(make_run(tmp_path / "r", role="distill", config={"teacher": "big", "lr": 1e-3}))
    assert run.role == "distill"
    assert run.config["teacher"] == "big"


def test_nan_and_inf_are_values_and_an_empty_cell_is_missing(tmp_path, make_run):
    steps = "step,loss,grad_norm\n0,1.0,\n1,nan,2.0\n2,inf,-inf\n3,NaN,3\n"
    run = read_one(make_run(tmp_path / "r", steps=steps))
    loss = run.steps["loss"].to_numpy()
    assert loss[0] == 1.0 and math.isnan(loss[1]) and loss[2] == math.inf and math.isnan(loss[3])
    assert run.steps["grad_norm"].iloc[2] == -math.inf
    assert run.nan_steps["loss"].tolist() == [1, 3]
    assert "grad_norm" not in run.nan_steps  # the empty cell at step 0 is missing, not NaN
    assert math.isnan(run.steps["grad_norm"].iloc[0])


def test_a_column_with_empty_cells_and_nans_lists_only_the_nans(tmp_path, make_run):
    run = read_one(make_run(tmp_path / "r", steps="step,loss,grad_norm\n0,1,\n1,1,nan\n2,1,\n3,1,NaN\n4,1,2\n"))
    assert list(run.nan_steps) == ["grad_norm"]
    assert run.nan_steps["grad_norm"].tolist() == [1, 3]
    assert np.isnan(run.steps["grad_norm"].iloc[[0, 1, 2, 3]]).all()


def test_a_large_file_lists_its_nans_however_spelled_and_none_where_it_spells_none(tmp_path, make_run):
    # past the small-file parse: pyarrow reads these, and a file without an "n" after its header is not searched
    rows = [f"{i},{1 / (i + 1):.6f},{i % 3}" for i in range(400)]
    rows[10], rows[20], rows[30] = "10,nan,1", "20,NaN,", "30,,NAN"
    run = read_one(make_run(tmp_path / "a", steps="step,loss,grad_norm\n" + "\n".join(rows) + "\n"))
    assert run.nan_steps["loss"].tolist() == [10, 20] and run.nan_steps["grad_norm"].tolist() == [30]
    assert math.isnan(run.steps["grad_norm"].iloc[20]) and math.isnan(run.steps["loss"].iloc[30])
    plain = "step,loss,grad_norm\n" + "".join(f"{i},{1 / (i + 1):.6f},\n" for i in range(400))
    run = read_one(make_run(tmp_path / "b", steps=plain))
    assert run.nan_steps == {} and run.steps["grad_norm"].isna().all() and run.steps["loss"].iloc[3] == 0.25


def test_a_steps_csv_that_is_no_file_is_missing(tmp_path, make_run):
    folder = make_run(tmp_path / "r", steps=None, status="running")
    (folder / "steps.csv").mkdir()
    os.mkfifo(folder / "evals.csv")  # read as no file, without waiting for a writer
    run = read_one(folder)
    assert run.n_steps == 0 and run.evals.empty and run.notes == ["steps.csv: not written yet"]
    (folder / "run.json").write_text('{"format": "diagnose.run/1", "status": "finished"}')
    with pytest.raises(LogError, match="steps.csv: missing: every run needs one"):
        read_one(folder)


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_a_json_error_is_placed_whatever_the_newlines(tmp_path, make_run, newline):
    folder = make_run(tmp_path / "r")
    (folder / "run.json").write_bytes(f'{{"format": "diagnose.run/1",{newline}  "name": }}'.encode())
    with pytest.raises(LogError) as caught:
        read_one(folder)
    assert str(caught.value) == f"{folder}/run.json:2: invalid JSON: Expecting value (column 11)"


def test_the_tables_can_be_edited_in_place(tmp_path, make_run):
    # pyarrow hands out read-only memory for a column in one chunk without empty cells
    run = read_one(make_run(tmp_path / "r", steps="step,loss,lr\n0,1,0.1\n1,0.9,0.1\n", evals="step,split,loss\n1,valid,2\n"))
    run.steps.loc[0, "loss"] = 5.0
    run.steps.loc[1, "step"] = 7
    run.evals.loc[0, "loss"] = 3.0
    assert run.steps["loss"].tolist() == [5.0, 0.9] and run.steps["step"].tolist() == [0, 7]
    assert run.evals["loss"].tolist() == [3.0]


def test_extra_numeric_columns_are_kept(tmp_path, make_run):
    run = read_one(make_run(tmp_path / "r", steps="step,loss,update_norm,layer3.norm\n0,1,0.1,2\n1,0.5,0.2,3\n"))
    assert run.steps["update_norm"].tolist() == [0.1, 0.2]
    assert run.steps["layer3.norm"].tolist() == [2.0, 3.0]


def test_an_extra_text_column_is_left_out_with_a_note_naming_the_line(tmp_path, make_run):
    run = read_one(make_run(tmp_path / "r", steps="step,loss,phase\n0,1,1\n1,0.5,warmup\n"))
    assert "phase" not in run.steps.columns
    assert run.notes == ["steps.csv:3: column 'phase' holds text ('warmup'), not numbers: column left out"]


def test_a_last_line_cut_short_by_a_crash_is_ignored_with_a_note(tmp_path, make_run):
    run = read_one(make_run(tmp_path / "r", steps="step,loss,grad_norm\n0,1,1\n1,0.9,1\n2,0.8"))
    assert run.steps["step"].tolist() == [0, 1]
    assert run.notes == ["steps.csv:4: last line cut short ('2,0.8'), ignored"]


def test_a_complete_last_line_without_newline_is_kept(tmp_path, make_run):
    run = read_one(make_run(tmp_path / "r", steps="step,loss\n0,1\n1,0.9"))
    assert run.steps["loss"].tolist() == [1.0, 0.9]
    assert run.notes == []


def test_crlf_line_endings_and_a_byte_order_mark_are_read(tmp_path, make_run):
    folder = make_run(tmp_path / "r", steps=None)
    (folder / "steps.csv").write_bytes("\ufeffstep,loss\r\n0,1.5\r\n1,1.25\r\n".encode("utf-8"))
    run = read_one(folder)
    assert run.steps["loss"].tolist() == [1.5, 1.25]


def test_steps_are_sorted_and_a_step_logged_twice_keeps_its_last_row(tmp_path, make_run):
    run = read_one(make_run(tmp_path / "r", steps="step,loss\n0,1\n1,0.9\n2,0.8\n1,0.7\n2,0.6\n3,0.5\n"))
    assert run.steps["step"].tolist() == [0, 1, 2, 3]
    assert run.steps["loss"].tolist() == [1.0, 0.7, 0.6, 0.5]
    assert run.notes == ["steps.csv: 2 steps logged more than once (first: step 1); the last row of each is used (a resumed run?)"]


def test_a_header_only_run_is_read_with_no_steps(tmp_path, make_run):
    run = read_one(make_run(tmp_path / "r", steps="step,loss\n", status="running"))
    assert run.n_steps == 0
    assert "steps.csv: no steps logged yet" in run.notes


def test_a_running_run_without_steps_yet_is_read(tmp_path, make_run):
    run = read_one(make_run(tmp_path / "r", steps=None, status="running"))
    assert run.n_steps == 0 and run.notes == ["steps.csv: not written yet"]


def test_a_running_run_whose_files_stopped_growing_is_interrupted(tmp_path, make_run):
    folder = make_run(tmp_path / "r", status="running")
    assert read_one(folder).status == "running"
    an_hour_ago = time.time() - 3600
    for path in folder.iterdir():
        os.utime(path, (an_hour_ago, an_hour_ago))
    run = read_one(folder)
    assert run.status == "interrupted"
    assert "shown as interrupted" in run.notes[-1]


def test_a_finished_run_is_never_interrupted(tmp_path, make_run):
    folder = make_run(tmp_path / "r", status="finished")
    an_hour_ago = time.time() - 3600
    for path in folder.iterdir():
        os.utime(path, (an_hour_ago, an_hour_ago))
    assert read_one(folder).status == "finished"


def test_evals_keep_their_splits_and_metrics(tmp_path, make_run):
    evals = "step,split,loss,accuracy\n10,val,0.5,0.8\n10,train,0.4,\n20,validation,0.45,0.82\n"
    run = read_one(make_run(tmp_path / "r", evals=evals))
    assert run.valid_evals()["loss"].tolist() == [0.5, 0.45]
    assert run.train_evals()["step"].tolist() == [10]
    assert np.isnan(run.evals["accuracy"].iloc[1])


def test_evals_without_a_loss_column_are_read(tmp_path, make_run):
    run = read_one(make_run(tmp_path / "r", evals="step,split,accuracy\n5,valid,0.9\n"))
    assert run.valid_evals()["accuracy"].tolist() == [0.9]
    assert np.isnan(run.valid_evals()["loss"].iloc[0])
    assert list(run.evals.columns) == ["step", "split", "loss", "accuracy"]


def test_evals_come_as_step_split_loss_whatever_the_header_order(tmp_path, make_run):
    run = read_one(make_run(tmp_path / "r", evals="accuracy,loss,split,step\n0.8,0.5,valid,20\n0.7,0.6,valid,10\n"))
    assert list(run.evals.columns) == ["step", "split", "loss", "accuracy"]
    assert run.evals["step"].tolist() == [10, 20] and run.evals["loss"].tolist() == [0.6, 0.5]


MALFORMED = {
    "run.json is not JSON": (
        {"run.json": '{"format": "diagnose.run/1",\n  "name": }'},
        "run.json:2: invalid JSON: Expecting value (column 11)",
    ),
    "run.json is empty": ({"run.json": ""}, 'run.json: file is empty: expected a JSON object with "format": "diagnose.run/1"'),
    "run.json is a list": ({"run.json": "[1, 2]"}, "run.json: expected a JSON object, found list"),
    "run.json lacks format": ({"run.json": "{}"}, 'run.json: missing required key "format" (expected "diagnose.run/1")'),
    "run.json has another format": (
        {"run.json": '{"format": "diagnose.run/9"}'},
        "run.json: unsupported format 'diagnose.run/9' (this version reads \"diagnose.run/1\")",
    ),
    "name is a number": ({"meta": {"name": 3}}, 'run.json: "name" must be a non-empty string, found 3'),
    "config is a list": ({"meta": {"config": [1]}}, 'run.json: "config" must be an object, found list'),
    "lr is text": ({"meta": {"config": {"lr": "0.1"}}}, 'run.json: config "lr" must be a number, found "0.1"'),
    "status is unknown": (
        {"meta": {"status": "done"}},
        'run.json: "status" must be one of running, finished, diverged, crashed; found "done"',
    ),
    "steps.csv is missing": ({"steps": None, "meta": {"status": "finished"}}, "steps.csv: missing: every run needs one (run.json says status 'finished')"),
    "steps.csv is empty": ({"steps": ""}, "steps.csv:1: file is empty: expected a header row naming step, loss"),
    "loss column is missing": ({"steps": "step,los\n0,1\n"}, "steps.csv:1: missing required column 'loss' (header: step,los)"),
    "a column is named twice": ({"steps": "step,loss,loss\n0,1,1\n"}, "steps.csv:1: header names column 'loss' twice"),
    "a column name is empty": ({"steps": "step,loss,\n0,1,2\n"}, "steps.csv:1: header has an empty column name: 'step,loss,'"),
    "a loss is text": ({"steps": "step,loss\n0,1\n1,abc\n2,0.5\n"}, "steps.csv:3: column 'loss': 'abc' is not a number"),
    "a known column is text": ({"steps": "step,loss,lr\n0,1,0.1\n1,1,fast\n"}, "steps.csv:3: column 'lr': 'fast' is not a number"),
    "a row has a field too many": ({"steps": "step,loss\n0,1\n1,2,3\n2,1\n"}, "steps.csv:3: expected 2 fields (step,loss), found 3"),
    "a row has a field too few": ({"steps": "step,loss,lr\n0,1,1\n1,2\n2,1,1\n"}, "steps.csv:3: expected 3 fields (step,loss,lr), found 2"),
    "a step is negative": ({"steps": "step,loss\n0,1\n-1,2\n"}, "steps.csv:3: step must be a whole number >= 0, found -1.0"),
    "a step is fractional": ({"steps": "step,loss\n0,1\n1.5,2\n"}, "steps.csv:3: step must be a whole number >= 0, found 1.5"),
    "a step is empty": ({"steps": "step,loss\n0,1\n,2\n"}, "steps.csv:3: step must be a whole number >= 0, found empty"),
    "a step is nan": ({"steps": "step,loss\n0,1\n\n\nnan,2\n"}, "steps.csv:5: step must be a whole number >= 0, found empty"),
    "a step is inf": ({"steps": "step,loss\n0,1\ninf,2\n"}, "steps.csv:3: step must be a whole number >= 0, found inf"),
    "a step is past 2**53": (
        {"steps": "step,loss\n0,1\n9007199254740994,2\n"},
        "steps.csv:3: step must be a whole number >= 0, found 9007199254740994.0",
    ),
    "a step is past int64": ({"steps": "step,loss\n0,1\n1e19,2\n"}, "steps.csv:3: step must be a whole number >= 0, found 1e+19"),
    "an eval step is fractional": (
        {"evals": "step,split,loss\n0,valid,1\n0.5,valid,1\n"},
        "evals.csv:3: step must be a whole number >= 0, found 0.5",
    ),
    "steps.csv is binary": ({"steps_bytes": b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe"}, "steps.csv:1: header is not UTF-8 text (is this a CSV file?)"),
    "evals.csv lacks split": ({"evals": "step,loss\n0,1\n"}, "evals.csv:1: missing required column 'split' (header: step,loss)"),
    "an eval loss is text": ({"evals": "step,split,loss\n0,valid,x\n"}, "evals.csv:2: column 'loss': 'x' is not a number"),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_input_gets_one_line_naming_file_line_and_problem(tmp_path, case, make_run):
    spec, expected = MALFORMED[case]
    folder = make_run(
        tmp_path / "r",
        steps=spec.get("steps", "step,loss\n0,1\n"),
        evals=spec.get("evals"),
        **spec.get("meta", {}),
    )
    if "run.json" in spec:
        (folder / "run.json").write_text(spec["run.json"])
    if "steps_bytes" in spec:
        (folder / "steps.csv").write_bytes(spec["steps_bytes"])
    with pytest.raises(LogError) as caught:
        read_one(folder)
    message = str(caught.value)
    assert "\n" not in message
    assert message == f"{folder}/{expected}"


def test_one_corrupt_run_among_many_costs_only_itself(tmp_path, make_run):
    for i in range(20):
        make_run(tmp_path / "sweep" / f"run{i:02d}", config={"lr": 0.01 * (i + 1)})
    bad = make_run(tmp_path / "sweep" / "run07", steps="step,loss\n0,1\n1,oops\n")
    root = read_root(tmp_path)
    assert len(root.runs) == 19
    [unreadable] = root.unreadable
    assert unreadable.path == str(bad / "steps.csv")
    assert unreadable.error == f"{bad}/steps.csv:3: column 'loss': 'oops' is not a number"


def test_two_runs_with_the_same_name_in_a_study_are_told_apart(tmp_path, make_run):
    make_run(tmp_path / "s" / "a", name="same")
    make_run(tmp_path / "s" / "b", name="same")
    names = sorted(r.name for r in read_root(tmp_path).runs)
    assert names == ["s/a", "s/b"]


def test_a_log_root_that_is_not_a_folder_is_an_error(tmp_path, make_run):
    with pytest.raises(LogError, match="not a folder"):
        read_root(tmp_path / "missing")


def test_a_bad_step_deep_in_a_large_file_is_found_at_its_line(tmp_path, make_run):
    lines = [f"{i},{1 / (i + 1):.6g}\n" for i in range(200_000)]
    lines[150_000] = "150000.5,1\n"
    folder = make_run(tmp_path / "r", steps="step,loss\n" + "".join(lines))
    with pytest.raises(LogError) as caught:
        read_one(folder)
    assert str(caught.value) == f"{folder}/steps.csv:150002: step must be a whole number >= 0, found 150000.5"


def test_a_large_file_reads_every_row(tmp_path, make_run):
    n = 200_000
    lines = "".join(f"{i},{1 / (i + 1):.6g},{i % 7}\n" for i in range(n))
    run = read_one(make_run(tmp_path / "r", steps="step,loss,grad_norm\n" + lines))
    assert run.n_steps == n
    assert run.steps["grad_norm"].sum() == sum(i % 7 for i in range(n))
