"""Plain CSV logs, W&B CSV exports and plain-text logs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from diagnose.readers import csvlog, read_root, tensorboard, textlog
from diagnose.readers.keys import KeyMap


def _one(root):
    return _one_with(root, KeyMap())


def _one_with(root, keys):
    result = read_root(root, keys=keys)
    assert result.unreadable == [], result.unreadable
    [run] = result.runs
    return run


def test_pandas_to_csv_of_a_wandb_history_is_one_run(tmp_path):
    """``run.history().to_csv()``: pandas' unnamed index column, ``_step``, ``train/loss`` ..."""
    history = pd.DataFrame({
        "_step": np.arange(50), "_runtime": np.linspace(0, 9, 50), "train/loss": np.linspace(3, 1, 50),
        "train/grad_norm": np.full(50, 0.5), "train/learning_rate": np.full(50, 3e-4),
        "eval/loss": [2.0 if s % 10 == 9 else np.nan for s in range(50)],
    })
    folder = tmp_path / "sweep" / "lr3e-4"
    folder.mkdir(parents=True)
    history.to_csv(folder / "history.csv")
    run = _one(tmp_path)
    assert (run.study, run.name, run.format) == ("sweep", "lr3e-4", csvlog.WANDB_FORMAT)
    assert run.steps["step"].tolist() == list(range(50))
    np.testing.assert_allclose(run.steps["loss"], history["train/loss"])
    assert run.sources == {"loss": "train/loss", "grad_norm": "train/grad_norm", "lr": "train/learning_rate",
                           "eval:loss": "eval/loss"}
    assert run.evals["step"].tolist() == [9, 19, 29, 39, 49]
    assert "_runtime" in run.steps.columns


def test_wandb_chart_export_drops_min_max_and_the_run_prefix(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "export.csv").write_text(
        'Step,"lr0.1 - train/loss","lr0.1 - train/loss__MIN","lr0.1 - train/loss__MAX","lr0.1 - val/loss"\n'
        "0,2.3,2.2,2.4,\n10,2.0,1.9,2.1,2.1\n20,nan,,,\n"
    )
    run = _one(tmp_path)
    assert run.format == csvlog.WANDB_FORMAT and run.config == {"wandb_run": "lr0.1"}
    assert run.steps.columns.tolist() == ["step", "loss"]
    assert run.nan_steps["loss"].tolist() == [20]
    assert run.evals[["step", "loss"]].values.tolist() == [[10, 2.1]]


def test_wandb_export_of_several_runs_says_so(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "export.csv").write_text("Step,a - loss,b - loss\n0,1,2\n")
    [bad] = read_root(tmp_path).unreadable
    assert bad.error.endswith("export.csv:1: a W&B export of 2 runs (a, b): export each run to a folder of its own")


def test_plain_csv_with_unusual_names_and_key_options(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "log.csv").write_text("iteration,objective,gn,heldout\n0,3.0,1.0,\n1,2.5,1.2,2.9\n2,2.0,1.1,\n")
    assert read_root(tmp_path).runs == []  # no loss among the columns: not a log
    keys = KeyMap(loss="objective", grad_norm="gn", valid="heldout")
    run = read_root(tmp_path, keys=keys).runs[0]
    assert run.format == csvlog.FORMAT
    assert run.steps["loss"].tolist() == [3.0, 2.5, 2.0] and run.steps["grad_norm"].tolist() == [1.0, 1.2, 1.1]
    assert run.evals[["step", "split", "loss"]].values.tolist() == [[1, "valid", 2.9]]
    assert run.sources == {"loss": "objective", "grad_norm": "gn", "valid:loss": "heldout"}


def test_a_folder_that_cannot_be_listed_holds_no_log(tmp_path):
    (tmp_path / "log.csv").write_text("step,loss\n0,1.0\n")
    for folder in (tmp_path / "absent", tmp_path / "log.csv"):  # FileNotFoundError, NotADirectoryError
        assert not (csvlog.sniff(folder) or textlog.sniff(folder) or tensorboard.sniff(folder))


def test_several_text_logs_in_one_folder_are_named(tmp_path):
    (tmp_path / "r").mkdir()
    for name in ("a.log", "b.txt"):
        (tmp_path / "r" / name).write_text("step:1 loss:2.0\nstep:2 loss:1.9\n")
    (tmp_path / "r" / "notes.txt").write_text("no step here\n")
    [bad] = read_root(tmp_path).unreadable
    assert bad.error == f"{tmp_path / 'r'}: holds 2 training logs (a.log, b.txt): put each run's log in a folder of its own"


def test_several_logs_in_one_folder_are_named(tmp_path):
    for name in ("a.csv", "b.csv"):
        (tmp_path / name).write_text("step,loss\n0,1\n")
    [bad] = read_root(tmp_path).unreadable
    assert "holds 2 CSV logs (a.csv, b.csv): put each run's log in a folder of its own" in bad.error


def test_text_log_key_value_styles(tmp_path):
    folder = tmp_path / "study" / "run1"
    folder.mkdir(parents=True)
    (folder / "train.log").write_text(
        "Namespace(lr=0.1, batch_size=32)\n"          # no step: not a record
        "starting training\n"
        "step=0 loss=2.5 lr=0.1 grad_norm=1.5\n"
        "step: 1, loss: 2.25, lr: 0.1, grad_norm: 1.25\n"
        "iter=2 | loss=nan | lr=0.1\n"
        "step=2 val_loss=2.4 val_acc=0.5\n"
        "step=3 loss=inf time=12ms\n"
    )
    run = _one(tmp_path)
    assert (run.study, run.name, run.format) == ("study", "run1", textlog.FORMAT)
    assert run.steps["step"].tolist() == [0, 1, 2, 3]
    assert run.steps["loss"].tolist()[:2] == [2.5, 2.25] and np.isnan(run.steps["loss"].iloc[2])
    assert run.steps["loss"].iloc[3] == np.inf
    assert run.nan_steps["loss"].tolist() == [2]
    assert run.steps["grad_norm"].tolist()[:2] == [1.5, 1.25]
    assert run.steps["time"].iloc[3] == 12.0
    assert run.evals[["step", "split", "loss", "acc"]].values.tolist() == [[2, "val", 2.4, 0.5]]


def test_text_sniff_ignores_prose(tmp_path):
    (tmp_path / "README.txt").write_text("Set step: 1 to start. The loss: 2 is typical.\nNothing else.\n")
    (tmp_path / "notes.txt").write_text("\0\1\2binary")
    assert not textlog.sniff(tmp_path)
    assert read_root(tmp_path).runs == []


def test_text_step_total_gives_max_steps(tmp_path):
    (tmp_path / "x.txt").write_text("".join(f"step:{s}/40 train_loss:{3 - s / 20:.3f}\n" for s in range(1, 41)))
    run = _one(tmp_path)
    assert run.config == {"max_steps": 40} and run.n_steps == 40


def test_text_step_is_found_as_a_csv_step_column_is(tmp_path):
    """``iter:5 step:1005``: the best known name numbers the step, whatever the order, and ``iter`` is kept as a
    metric, exactly as a CSV with both columns is read."""
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "train.log").write_text("iter:5 step:1005 loss:2.0\niter:6 step:1006 loss:1.9 iter:6\n")
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "log.csv").write_text("iter,step,loss\n5,1005,2.0\n6,1006,1.9\n")
    text, table = sorted(read_root(tmp_path).runs, key=lambda run: run.format, reverse=True)
    assert (text.format, table.format) == (textlog.FORMAT, csvlog.FORMAT)
    assert text.steps["step"].tolist() == [1005, 1006] and text.steps["iter"].tolist() == [5.0, 6.0]
    pd.testing.assert_frame_equal(text.steps, table.steps)


def test_text_logged_step_beside_the_step_key_is_an_error_at_its_line(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "train.log").write_text("iter:0 loss:2.0\niter:1 loss:1.9 step:1\niter:2 loss:1.8 step:7\n")
    [bad] = read_root(tmp_path, keys=KeyMap(step="iter")).unreadable
    assert bad.error == (f"{tmp_path / 'r' / 'train.log'}:3: the step is given twice with different values: "
                         "iter:2 (--step-key), step:7")


def test_text_split_words_keep_train_and_val_loss_apart(tmp_path):
    """``train loss: 2.3 | val loss: 2.5`` is a training loss and an evaluation, read as ``train_loss`` and
    ``val_loss`` are (it was ``loss`` twice, the last one winning: training loss 2.5, no evals)."""
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "train.log").write_text("step:1 | train loss: 2.3 | valid loss: 2.5\n"
                                                "step:2 | train loss: 2.2\n")
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "log.csv").write_text("step,train_loss,valid_loss\n1,2.3,2.5\n2,2.2,\n")
    text, table = sorted(read_root(tmp_path).runs, key=lambda run: run.format, reverse=True)
    assert text.steps["loss"].tolist() == [2.3, 2.2]
    assert text.evals[["step", "split", "loss"]].values.tolist() == [[1, "valid", 2.5]]
    pd.testing.assert_frame_equal(text.steps, table.steps)
    pd.testing.assert_frame_equal(text.evals, table.evals)


def test_text_nanogpt_log(tmp_path):
    """karpathy/nanoGPT's train.py: ``iter N: loss X`` is the update's loss; ``step N: train loss X, val loss Y``
    is estimate_loss() over eval batches, so its train loss is the ``train`` split of that evaluation."""
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "train.log").write_text(
        "tokens per iteration will be: 16,384\n"
        "step 0: train loss 4.2874, val loss 4.2823\n"
        "iter 0: loss 4.2649, time 29842.17ms, mfu -100.00%\n"
        "iter 10: loss 3.2421, time 104.51ms, mfu 3.56%\n"
        "step 250: train loss 1.9718, val loss 2.0712\n"
        "saving checkpoint to out-shakespeare-char\n"
        "iter 250: loss 2.0405, time 14652.81ms, mfu 3.22%\n")
    run = _one(tmp_path)
    assert run.steps["step"].tolist() == [0, 10, 250]
    assert run.steps["loss"].tolist() == [4.2649, 3.2421, 2.0405]
    assert run.steps["mfu"].tolist() == [-100.0, 3.56, 3.22]
    assert run.evals[["step", "split", "loss"]].values.tolist() == [
        [0, "train", 4.2874], [0, "val", 4.2823], [250, "train", 1.9718], [250, "val", 2.0712]]
    assert run.sources == {"loss": "loss", "train:loss": "train loss", "val:loss": "val loss"}


def test_text_key_repeated_with_the_same_value_is_read(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "train.log").write_text("step:1 loss:2.5 loss:2.5\nstep:2 loss:nan lr:0.1 loss:nan\n")
    run = _one(tmp_path)
    assert run.steps["loss"].iloc[0] == 2.5 and run.nan_steps["loss"].tolist() == [2]


def test_lightning_step_column_beside_the_step_key_is_an_error_as_in_a_csv(tmp_path):
    """``--step-key iter`` with a logged ``step`` column: a plain CSV and a Lightning metrics.csv both refuse at
    the header (Lightning dropped ``step`` silently)."""
    for folder, name in (("csv", "log.csv"), ("pl", "metrics.csv")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / name).write_text("epoch,iter,step,loss\n0,5,1005,2.0\n0,6,1006,1.9\n")
    result = read_root(tmp_path, keys=KeyMap(step="iter"))
    assert result.runs == []
    errors = {Path(bad.path).name: bad.error for bad in result.unreadable}
    assert errors["log.csv"].startswith(f"{tmp_path / 'csv' / 'log.csv'}:1: ")
    assert errors["metrics.csv"] == (f"{tmp_path / 'pl' / 'metrics.csv'}:1: --step-key 'iter' names the step column, but "
                            "Lightning's own 'step' column would then be lost: leave out --step-key")


def test_lightning_step_key_without_a_step_column(tmp_path):
    (tmp_path / "pl").mkdir()
    (tmp_path / "pl" / "metrics.csv").write_text("epoch,iter,loss\n0,5,2.0\n0,6,1.9\n")
    run = _one_with(tmp_path, KeyMap(step="iter"))
    assert run.format == "lightning.csv" and run.steps["step"].tolist() == [5, 6]


def test_text_split_word_before_a_step_name_leaves_the_step(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "train.log").write_text("Train Step: 5 | Train Loss: 2.0 | Val Loss: 2.1\n"
                                              "Train Step: 6 | Train Loss: 1.9\n")
    run = _one(tmp_path)
    assert run.steps[["step", "loss"]].values.tolist() == [[5, 2.0], [6, 1.9]]
    assert run.evals[["step", "split", "loss"]].values.tolist() == [[5, "val", 2.1]]


def test_a_step_logged_twice_keeps_its_last_row_with_a_note(tmp_path):
    """A resumed run logs some steps again: ``records.assemble`` keeps the last row and says so."""
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "log.csv").write_text("step,loss\n0,1.0\n1,0.9\n1,0.8\n2,0.7\n")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "train.log").write_text("step:0 loss:1.0\nstep:1 loss:0.9\nstep:1 loss:0.8\nstep:2 loss:0.7\n")
    for name, log in (("csv", "log.csv"), ("text", "train.log")):
        run = _one(tmp_path / name)
        assert run.steps["loss"].tolist() == [1.0, 0.8, 0.7]
        assert run.notes == [f"{log}: 1 steps logged more than once (first: step 1); the last row of each is used "
                             "(a resumed run?)"]
