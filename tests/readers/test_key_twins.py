"""Keys that differ only in case (``Loss`` and ``loss``) in one log: an error naming both, never one silently left out.

Key names are matched ignoring case and punctuation, so two such keys are one
name to the readers and only one of them could be read. Each log here is
written by the library that writes that format (Lightning's CSVLogger, the
Trainer's TrainerState, torch's SummaryWriter, pandas' to_csv) or printed as a
training script prints it.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from diagnose.readers import read_root
from diagnose.readers.keys import KeyMap

STEPS = range(6)
# two different series: which one is the training loss is not for the reader to guess
SMALL = [1.0 / (1 + s) for s in STEPS]
BIG = [10.0 + s for s in STEPS]
HINT = "name the one that holds the training loss with --loss-key"


def write_csv(folder):
    frame = pd.DataFrame({"step": list(STEPS), "Loss": BIG, "loss": SMALL})
    frame.to_csv(folder / "log.csv", index=False)
    return folder / "log.csv", 1, "columns of log.csv"


def write_lightning(folder):
    loggers = pytest.importorskip("lightning.pytorch.loggers")
    logger = loggers.CSVLogger(str(folder), name="", version="")
    for step in STEPS:
        logger.log_metrics({"Loss": BIG[step], "loss": SMALL[step]}, step=step)
    logger.save()
    [path] = folder.rglob("metrics.csv")
    return path, 1, "columns of metrics.csv"


def write_trainer_state(folder):
    transformers = pytest.importorskip("transformers")
    state = transformers.TrainerState(global_step=len(STEPS))
    # the Trainer's own entries; a callback of the user's adds 'Loss' from the third step on
    state.log_history = [{"loss": SMALL[s], "step": s, **({"Loss": BIG[s]} if s >= 2 else {})} for s in STEPS]
    state.save_to_json(str(folder / "trainer_state.json"))
    text = (folder / "trainer_state.json").read_text()
    entry = text[: text.index('"Loss"')].rindex("{")  # the entry that first logs 'Loss' starts on this line
    return folder / "trainer_state.json", text[:entry].count("\n") + 1, "log_history keys of trainer_state.json"


def write_tensorboard(folder):
    pytest.importorskip("tensorboard")
    summary = pytest.importorskip("torch.utils.tensorboard", reason="the event files are written by torch's writer")

    writer = summary.SummaryWriter(log_dir=str(folder))
    for step in STEPS:
        writer.add_scalar("loss", SMALL[step], step)
        writer.add_scalar("Loss", BIG[step], step)
    writer.close()
    [path] = folder.glob("events.out.tfevents.*")
    return path, None, "scalar tags of the event files"


def write_text(folder):
    lines = ["starting training"] + [f"step:{s} loss: {SMALL[s]}" + (f" Loss: {BIG[s]}" if s >= 3 else "")
                                     for s in STEPS]
    (folder / "train.log").write_text("\n".join(lines) + "\n")
    return folder / "train.log", 5, "keys printed in train.log"  # line 5: step 3, where 'Loss' is first printed


WRITERS = {"csv": write_csv, "lightning": write_lightning, "hf": write_trainer_state, "tensorboard": write_tensorboard,
           "text": write_text}


@pytest.mark.parametrize("reader", WRITERS)
def test_keys_that_differ_only_in_case_are_an_error_naming_both_at_their_line(tmp_path, reader):
    folder = tmp_path / "logs" / "run"
    folder.mkdir(parents=True)
    path, line, what = WRITERS[reader](folder)
    result = read_root(tmp_path / "logs")
    assert result.runs == []
    [unreadable] = result.unreadable
    where = f"{path}:{line}" if line is not None else str(path)
    # the key read first keeps the part; the error names both, whichever came first
    used, left_out = (("Loss", "loss") if reader in ("csv", "lightning") else ("loss", "Loss"))
    assert unreadable.error == (f"{where}: {used!r} and {left_out!r} differ only in case or punctuation, and key names "
                                f"are matched ignoring both: one of these {what} would be left out; {HINT}")


@pytest.mark.parametrize("reader", WRITERS)
def test_the_key_option_names_the_loss_and_the_twin_left_out_is_a_note(tmp_path, reader):
    folder = tmp_path / "logs" / "run"
    folder.mkdir(parents=True)
    path, _, _ = WRITERS[reader](folder)
    result = read_root(tmp_path / "logs", keys=KeyMap(loss="Loss"))
    assert result.unreadable == []
    [run] = result.runs
    logged = run.steps.dropna(subset=["loss"])
    np.testing.assert_allclose(logged["loss"], [BIG[s] for s in logged["step"]])
    assert f"{path.name}: key 'loss' left out: --loss-key names 'Loss', the same key to diagnose" in " ".join(run.notes)


def test_keys_that_differ_only_in_case_and_can_both_be_kept_are_kept(tmp_path):
    folder = tmp_path / "logs" / "run"
    folder.mkdir(parents=True)
    pd.DataFrame({"step": list(STEPS), "loss": SMALL, "Accuracy": BIG, "accuracy": SMALL}).to_csv(
        folder / "log.csv", index=False)
    [run] = read_root(tmp_path / "logs").runs
    assert run.steps["Accuracy"].tolist() == BIG and run.steps["accuracy"].tolist() == SMALL


def test_evaluation_keys_that_differ_only_in_case_are_an_error_too(tmp_path):
    folder = tmp_path / "logs" / "run"
    folder.mkdir(parents=True)
    history = [{"loss": SMALL[s], "step": s} for s in STEPS] + [{"eval_loss": 0.5, "Eval_Loss": 0.7, "step": 5}]
    (folder / "trainer_state.json").write_text(json.dumps({"log_history": history}, indent=2))
    [unreadable] = read_root(tmp_path / "logs").unreadable
    assert unreadable.error == (f"{folder / 'trainer_state.json'}:27: 'Eval_Loss' and 'eval_loss' differ only in case "
                                "or punctuation, and key names are matched ignoring both: one of these log_history "
                                "keys of trainer_state.json would be left out; rename one of them")


def test_csv_step_column_beside_the_step_key_names_the_option(tmp_path):
    folder = tmp_path / "logs" / "run"
    folder.mkdir(parents=True)
    (folder / "log.csv").write_text("iter,step,loss\n0,100,1.0\n1,101,0.9\n")
    [unreadable] = read_root(tmp_path / "logs", keys=KeyMap(step="iter")).unreadable
    assert unreadable.error == (f"{folder / 'log.csv'}:1: --step-key 'iter' names the step column, but the column "
                                "'step' would then be lost: leave out --step-key")
    [run] = read_root(tmp_path / "logs").runs  # without it, 'step' numbers the steps and 'iter' is kept
    assert run.steps["step"].tolist() == [100, 101] and run.steps["iter"].tolist() == [0, 1]


def test_csv_two_step_columns_that_differ_only_in_case_name_both(tmp_path):
    folder = tmp_path / "logs" / "run"
    folder.mkdir(parents=True)
    (folder / "log.csv").write_text("Step,step,loss\n0,100,1.0\n1,101,0.9\n")
    [unreadable] = read_root(tmp_path / "logs").unreadable
    assert unreadable.error == (f"{folder / 'log.csv'}:1: columns 'Step' and 'step' would both be read as 'step': "
                                "rename one of them")
