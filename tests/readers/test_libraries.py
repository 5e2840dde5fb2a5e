"""Logs written by the real libraries on tiny CPU models, read back with the numbers they logged."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from diagnose.readers import hf, lightning, read_root, tensorboard
from diagnose.readers.keys import KeyMap


def test_trainer_checkpoints_are_one_run_read_from_the_newest(hf_output):
    root = read_root(hf_output.parent)
    assert root.unreadable == []
    [run] = root.runs  # checkpoint-6, checkpoint-12 and runs/ (TensorBoard) are one run
    assert run.name == "tiny-gpt2" and run.format == hf.FORMAT
    assert any("checkpoint-12" in note for note in run.notes)
    state = json.loads((hf_output / "checkpoint-12" / "trainer_state.json").read_text())
    logged = [e for e in state["log_history"] if "loss" in e]
    assert run.steps["step"].tolist() == [2, 4, 6, 8, 10, 12] == [e["step"] for e in logged]
    assert run.steps["loss"].tolist() == [e["loss"] for e in logged]
    assert run.steps["grad_norm"].tolist() == [e["grad_norm"] for e in logged]
    assert run.steps["lr"].tolist() == [e["learning_rate"] for e in logged]
    # two eval datasets: eval_a_loss and eval_b_loss are two splits, evaluated at 4, 8, 12
    assert sorted(set(run.evals["split"])) == ["a", "b"]
    a = run.evals[run.evals["split"] == "a"]
    assert a["step"].tolist() == [4, 8, 12]
    assert a["loss"].tolist() == [e["eval_a_loss"] for e in state["log_history"] if "eval_a_loss" in e]
    assert run.config["max_steps"] == 12 and run.config["batch_size"] == 4
    assert run.status is None  # the checkpoint was saved before the Trainer's end-of-training summary


def test_trainer_top_level_state_wins_when_newest(hf_output, tmp_path):
    copy = shutil.copytree(hf_output / "checkpoint-12", tmp_path / "out" / "checkpoint-12")
    shutil.copy(copy / "trainer_state.json", tmp_path / "out" / "trainer_state.json")
    [run] = read_root(tmp_path).runs
    assert run.name == "out" and run.notes == [] and run.n_steps == 6


def test_trainer_tensorboard_file_reads_the_same_numbers(hf_output):
    [events] = list((hf_output / "runs").iterdir())
    [run] = read_root(events.parent).runs
    assert run.format == tensorboard.FORMAT
    [from_json] = read_root(hf_output.parent).runs
    assert run.steps["step"].tolist() == from_json.steps["step"].tolist()
    # TensorBoard stores float32
    np.testing.assert_allclose(run.steps["loss"], from_json.steps["loss"], rtol=1e-6)
    np.testing.assert_allclose(run.steps["grad_norm"], from_json.steps["grad_norm"], rtol=1e-6)
    assert run.config["lr"] == 3e-3 and run.config["max_steps"] == 12
    assert sorted(set(run.evals["split"])) == ["a", "b"]


def test_lightning_versions_form_a_study_with_their_lrs(lightning_logs):
    root = read_root(lightning_logs)
    assert root.unreadable == []
    runs = sorted(root.runs, key=lambda r: r.name)
    assert [(r.study, r.name) for r in runs] == [("lightning_logs", "version_0"), ("lightning_logs", "version_1")]
    assert [r.config["lr"] for r in runs] == [0.01, 0.05]
    for run in runs:
        assert run.format == lightning.FORMAT
        assert run.config["momentum"] == 0.9 and run.config["batch_size"] == 8
        # 64 samples / 8 per batch x 3 epochs = 24 updates, each logged (log_every_n_steps=1)
        assert run.steps["step"].tolist() == list(range(24))
        assert run.sources["loss"] == "train_loss_step"
        assert run.sources["lr"].startswith("lr-SGD") and run.sources["momentum"] == "lr-SGD-momentum"
        assert (run.steps["lr"] == run.config["lr"]).all()  # the LR monitor's own rows joined the loss rows
        assert (run.steps["momentum"] == 0.9).all()
        assert run.evals.groupby("split").size().to_dict() == {"train": 3, "val": 3}
        assert run.evals["loss"].notna().all()


def test_lightning_loss_matches_the_csv(lightning_logs):
    import csv

    path = lightning_logs / "lightning_logs" / "version_1" / "metrics.csv"
    rows = [r for r in csv.DictReader(path.open()) if r["train_loss_step"]]
    [run] = [r for r in read_root(lightning_logs).runs if r.name == "version_1"]
    assert run.steps["loss"].tolist() == [float(r["train_loss_step"]) for r in rows]


def test_summary_writer_resume_is_one_run(summary_writer_logs):
    root = read_root(summary_writer_logs)
    assert root.unreadable == []
    assert sorted((r.study, r.name) for r in root.runs) == [("sweep", "lr0.1"), ("sweep", "lr0.3")]
    run = root.runs[0]
    assert run.steps["step"].tolist() == list(range(30))
    loss = run.steps.set_index("step")["loss"]
    assert loss[3] == pytest.approx(0.5)
    assert loss[16] == 26.0  # the second file (a resume) wins where both logged
    assert np.isnan(loss[25]) and run.nan_steps["loss"].tolist() == [25]
    assert run.steps["grad_norm"].notna().sum() == 20
    assert run.evals["step"].tolist() == [4, 9, 14, 19]
    assert run.sources == {"loss": "train/loss", "grad_norm": "train/grad_norm", "lr": "train/lr",
                           "eval:loss": "eval/loss"}


def test_key_map_names_an_unusual_tag(summary_writer_logs):
    root = read_root(summary_writer_logs, keys=KeyMap(loss="train/grad_norm", grad_norm="train/loss"))
    run = root.runs[0]
    assert run.sources["loss"] == "train/grad_norm" and run.n_steps == 20


def test_tensorboard_logger_hparams_yaml_gives_the_config(summary_writer_logs, tmp_path):
    folder = shutil.copytree(summary_writer_logs / "sweep" / "lr0.1", tmp_path / "lightning_logs" / "version_0")
    (folder / "hparams.yaml").write_text("lr: 0.1\nmomentum: 0.95\nhidden: 64\n")
    [run] = read_root(tmp_path).runs
    assert run.format == tensorboard.FORMAT
    assert run.config == {"lr": 0.1, "momentum": 0.95, "hidden": 64}


def test_trainer_checkpoint_newer_than_the_top_level_state_wins(hf_output, tmp_path):
    """A run resumed after its final save: the newer checkpoint holds the longer history."""
    out = tmp_path / "out"
    shutil.copytree(hf_output / "checkpoint-12", out / "checkpoint-12")
    shutil.copy(hf_output / "checkpoint-6" / "trainer_state.json", out / "trainer_state.json")
    [run] = read_root(tmp_path).runs
    assert run.n_steps == 6 and run.last_step == 12
    assert run.notes == ["read checkpoint-12/trainer_state.json: the newest saved state of this run"]


def test_tensorboard_files_are_merged_in_the_order_they_were_started(summary_writer_logs, tmp_path):
    """Names of files started in the same second end in a counter: "...1.10" sorts before "...1.9"."""
    folder = summary_writer_logs / "sweep" / "lr0.1"
    [first], [second] = folder.glob("*.a"), folder.glob("*.b")
    (tmp_path / "run").mkdir()
    shutil.copy(first, tmp_path / "run" / "events.out.tfevents.1700000000.host.1.9")
    shutil.copy(second, tmp_path / "run" / "events.out.tfevents.1700000000.host.1.10")
    [run] = read_root(tmp_path).runs
    assert run.steps.set_index("step")["loss"][16] == 26.0  # the resumed (second) file still wins
