"""Bad input of every format: a one-line error naming the file, the line and what is wrong."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diagnose.readers import read_root

GOOD_STATE = json.dumps({"global_step": 2, "max_steps": 2,
                         "log_history": [{"loss": 1.0, "step": 1}, {"loss": 0.5, "step": 2}]}, indent=2)

CASES = {
    # folder: ({file: content}, expected error after "<folder>/")
    "hf_truncated": ({"trainer_state.json": GOOD_STATE[:60]},
                     "trainer_state.json:5: file ends in the middle of the JSON (cut short?) (column 2)"),
    "hf_text_loss": ({"trainer_state.json": GOOD_STATE.replace('"loss": 0.5', '"loss": "abc"')},
                     "trainer_state.json:9: log_history[1]: 'loss' must be a number, found \"abc\""),
    "hf_bool_loss": ({"trainer_state.json": GOOD_STATE.replace('"loss": 0.5', '"loss": true')},
                     "trainer_state.json:9: log_history[1]: 'loss' must be a number, found true"),
    "hf_history_not_list": ({"trainer_state.json": '{"log_history": {"a": 1}}'},
                            'trainer_state.json: "log_history" must be a list, found dict'),
    "hf_entry_not_object": ({"trainer_state.json": '{"log_history": [{"loss": 1, "step": 1},\n 5]}'},
                            "trainer_state.json:2: log_history[1] must be an object, found int"),
    "hf_negative_step": ({"trainer_state.json": '{"log_history": [{"loss": 1, "step": 1},\n {"loss": 1, "step": -3}]}'},
                         'trainer_state.json:2: log_history[1]: "step" must be a whole number >= 0, found -3'),
    "hf_empty": ({"trainer_state.json": ""},
                 'trainer_state.json:1: file is empty: expected the Trainer\'s JSON state with a "log_history" list'),
    "hf_binary": ({"trainer_state.json": b"\x89PNG\r\n\x1a\n\xff\xfe"},
                  "trainer_state.json:1: not UTF-8 text (is this a trainer_state.json?)"),
    "hf_no_loss": ({"trainer_state.json": '{"log_history": [{"eval_loss": 1, "step": 1}]}'},
                   "trainer_state.json: no training loss among the log_history keys of trainer_state.json "
                   "(eval_loss): name it with --loss-key"),
    "pl_empty": ({"metrics.csv": ""}, "metrics.csv:1: file is empty: expected a header row naming step"),
    "pl_text_loss": ({"metrics.csv": "epoch,step,train_loss,val_loss\n0,0,1.0,\n0,1,abc,\n"},
                     "metrics.csv:3: column 'train_loss': 'abc' is not a number"),
    "pl_fractional_step": ({"metrics.csv": "epoch,step,train_loss\n0,0,1.0\n0,1.5,1.0\n"},
                           "metrics.csv:3: step must be a whole number >= 0, found 1.5"),
    "pl_bad_yaml": ({"metrics.csv": "step,train_loss\n0,1.0\n", "hparams.yaml": "lr: [1,\nmomentum: 0.9\n"},
                    "hparams.yaml:3: invalid YAML: expected ',' or ']', but got '<stream end>'"),
    "pl_binary": ({"metrics.csv": b"\x00\x01\x02\xff\xfe\n\x00"},
                  "metrics.csv:1: header is not UTF-8 text (is this a CSV file?)"),
    "pl_extra_field": ({"metrics.csv": "step,train_loss\n0,1.0\n1,0.9,7\n"},
                       "metrics.csv:3: expected 2 fields (step,train_loss), found 3"),
    "csv_text_loss": ({"log.csv": "step,loss\n0,1\n1,x\n"}, "log.csv:3: column 'loss': 'x' is not a number"),
    "txt_negative_step": ({"train.log": "step=0 loss=1\nstep=1 loss=1\nstep=-2 loss=1\n"},
                          "train.log:3: step must be a whole number >= 0, found -2.0"),
    "txt_fractional_step": ({"train.log": "step=0 loss=1\nstep=1 loss=1\nstep=2.5 loss=1\n"},
                            "train.log:3: step must be a whole number >= 0, found 2.5"),
    "txt_step_twice": ({"train.log": "step=0 loss=1\nstep=1 loss=1\nstep=2 loss=1 step=5\n"},
                       "train.log:3: the step is given twice with different values: step:2, step:5"),
    "txt_step_names_disagree": ({"train.log": "step=0 loss=1\nstep=1 loss=1\nStep:2 step:3 loss=1\n"},
                                "train.log:3: the step is given twice with different values: Step:2, step:3"),
    "txt_key_twice": ({"train.log": "step=0 loss=1\nstep:1 loss:2 loss:2\nstep:2 loss:2.3 lr:0.1 loss:2.5\n"},
                      "train.log:3: 'loss' is given twice with different values: 2.3, 2.5"),
    # the fuzz input ``step: step: s:0 step:0``: ``step``, the best name, numbers the line, not ``s``
    "txt_step_beside_s": ({"train.log": "s:0 loss=1\ns:1 loss=1\nstep: step: s:2 step:2.5 loss:1\n"},
                          "train.log:3: step must be a whole number >= 0, found 2.5"),
    "tb_garbage": ({"events.out.tfevents.1.x": b"hello world, not an event file at all"},
                   "events.out.tfevents.1.x: not a TensorBoard event file: unreadable record at byte 0 of 37"),
    "tb_empty": ({"events.out.tfevents.1.x": b""},
                 "events.out.tfevents.1.x: no scalar values in 1 event file(s) (events.out.tfevents.1.x): "
                 "nothing to analyse"),
}


@pytest.fixture(scope="module")
def bad_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    for folder, (files, _) in CASES.items():
        (root / folder).mkdir()
        for name, content in files.items():
            data = content if isinstance(content, bytes) else content.encode()
            (root / folder / name).write_bytes(data)
    return root, read_root(root)


@pytest.mark.parametrize("folder", sorted(CASES))
def test_one_line_error(bad_root, folder):
    root, result = bad_root
    errors = [u.error for u in result.unreadable if f"/{folder}/" in u.error + "/"]
    assert errors == [f"{root / folder}/{CASES[folder][1]}"]


def test_no_bad_folder_became_a_run(bad_root):
    _, result = bad_root
    assert result.runs == []


def _event_file(summary_writer_logs):
    [first] = (summary_writer_logs / "sweep" / "lr0.1").glob("*.a")  # the first session's file: 20 steps
    return first


def test_tensorboard_cut_short_is_a_note_and_the_rest_is_read(summary_writer_logs, tmp_path):
    data = _event_file(summary_writer_logs).read_bytes()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "events.out.tfevents.1.x").write_bytes(data[:-7])
    [run] = read_root(tmp_path).runs
    assert run.n_steps == 20
    [note] = run.notes
    assert note.startswith("events.out.tfevents.1.x: last record cut short at byte ")


def test_tensorboard_damaged_record_is_an_error(summary_writer_logs, tmp_path):
    data = bytearray(_event_file(summary_writer_logs).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "events.out.tfevents.1.x").write_bytes(bytes(data))
    [bad] = read_root(tmp_path).unreadable
    assert "events.out.tfevents.1.x: damaged event file: unreadable record at byte " in bad.error
    assert bad.error.endswith(f" of {len(data)}")


@pytest.mark.parametrize("folder, files", [
    ("hf", {"trainer_state.json": GOOD_STATE.replace('"loss": 0.5', '"loss": NaN').replace('"loss": 1.0', '"loss": Infinity')}),
    ("pl", {"metrics.csv": "step,train_loss\n1,inf\n2,nan\n"}),
    ("csv", {"log.csv": "step,loss\n1,inf\n2,nan\n"}),
    ("txt", {"train.log": "step=1 loss=inf\nstep=2 loss=nan\n"}),
])
def test_nan_and_inf_are_values_not_errors(tmp_path, folder, files):
    (tmp_path / folder).mkdir()
    for name, text in files.items():
        (tmp_path / folder / name).write_text(text)
    [run] = read_root(tmp_path).runs
    assert run.steps["step"].tolist() == [1, 2]
    assert run.steps["loss"].iloc[0] == np.inf and np.isnan(run.steps["loss"].iloc[1])
    assert run.nan_steps["loss"].tolist() == [2]
