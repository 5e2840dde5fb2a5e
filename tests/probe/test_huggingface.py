"""The Hugging Face TrainerCallback on a tiny GPT-2 built from a config (no download), on CPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers", reason="the HF integration test needs transformers")

from diagnose.probe.integrations.huggingface import DiagnoseCallback  # noqa: E402
from diagnose.readers.rundir import read  # noqa: E402

STEPS = 12


def tiny_gpt2():
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=40, n_positions=16)
    return transformers.GPT2LMHeadModel(config)


def dataset(n, seed):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 40, (n, 12), generator=generator)
    return [{"input_ids": row, "labels": row} for row in ids]


def train(tmp_path, callbacks, accumulation=1):
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=STEPS, per_device_train_batch_size=4,
        gradient_accumulation_steps=accumulation, learning_rate=3e-3, max_grad_norm=0.5, warmup_steps=3,
        logging_steps=1, eval_strategy="steps", eval_steps=4, save_strategy="no", report_to=[],
        use_cpu=True, seed=0, disable_tqdm=True, dataloader_num_workers=0,
    )
    trainer = transformers.Trainer(model=tiny_gpt2(), args=args, train_dataset=dataset(64, 1),
                                   eval_dataset=dataset(8, 2), callbacks=callbacks)
    trainer.train()
    return trainer


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("hf")
    logged = train(tmp_path, [DiagnoseCallback(tmp_path / "logs", "hf", "gpt2", flush_every=5)])
    plain = train(tmp_path, [])
    accumulated = train(tmp_path, [DiagnoseCallback(tmp_path / "logs", "hf", "accumulated")], accumulation=2)
    return tmp_path, logged, plain, accumulated


def test_run_directory_matches_the_trainers_own_log(runs):
    tmp_path, trainer, _, _ = runs
    run = read(tmp_path / "logs" / "hf" / "gpt2", "hf")
    history = [h for h in trainer.state.log_history if "grad_norm" in h]
    assert run.status == "finished" and len(history) == STEPS
    steps = run.steps
    assert steps["step"].tolist() == list(range(STEPS))
    # The Trainer logs the norm before clipping; so must we.
    np.testing.assert_allclose(steps["grad_norm"], [h["grad_norm"] for h in history], rtol=1e-5)
    np.testing.assert_allclose(steps["loss"], [h["loss"] for h in history], rtol=1e-3)
    np.testing.assert_allclose(steps["lr"], [h["learning_rate"] for h in history], rtol=1e-6)
    assert (steps["momentum"] == 0.9).all() and (steps["clip_norm"] == 0.5).all()
    assert steps["clipped"].tolist() == [float(n > 0.5) for n in steps["grad_norm"]]
    assert steps["clipped"].sum() > 0
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    assert run.evals["split"].tolist() == ["valid"] * len(evals)
    assert run.evals["step"].tolist() == [h["step"] - 1 for h in evals]
    np.testing.assert_allclose(run.evals["loss"], [h["eval_loss"] for h in evals], rtol=1e-6)
    assert run.config["lr"] == 3e-3 and run.config["clip_norm"] == 0.5 and run.config["max_steps"] == STEPS


def test_callback_clipping_trains_exactly_like_the_trainer(runs):
    _, logged, plain, _ = runs
    assert logged.args.max_grad_norm == 0.5
    assert "clip_grad_norm_" not in vars(logged.accelerator)  # the Trainer's own method is back after training
    for mine, theirs in zip(logged.model.parameters(), plain.model.parameters()):
        torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-7)


def test_gradient_accumulation_logs_one_row_per_update_with_the_whole_batch_loss(runs):
    tmp_path, _, _, trainer = runs
    steps = read(tmp_path / "logs" / "hf" / "accumulated", "hf").steps
    history = [h for h in trainer.state.log_history if "grad_norm" in h]
    assert steps["step"].tolist() == list(range(STEPS))
    np.testing.assert_allclose(steps["grad_norm"], [h["grad_norm"] for h in history], rtol=1e-5)
    np.testing.assert_allclose(steps["loss"], [h["loss"] for h in history], rtol=1e-3)


def test_resume_from_checkpoint_continues_the_run_directory(tmp_path):
    def trainer():
        args = transformers.TrainingArguments(
            output_dir=str(tmp_path / "out"), max_steps=8, per_device_train_batch_size=4, learning_rate=3e-3,
            save_strategy="steps", save_steps=4, report_to=[], use_cpu=True, seed=0, disable_tqdm=True,
        )
        return transformers.Trainer(model=tiny_gpt2(), args=args, train_dataset=dataset(64, 1),
                                    callbacks=[DiagnoseCallback(tmp_path / "logs", "hf", "resumed")])

    trainer().train()
    first = read(tmp_path / "logs" / "hf" / "resumed", "hf").steps
    trainer().train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-4"))
    run = read(tmp_path / "logs" / "hf" / "resumed", "hf")
    assert run.status == "finished"
    assert run.steps["step"].tolist() == list(range(8))
    assert any("logged more than once" in note for note in run.notes)
    np.testing.assert_allclose(run.steps["grad_norm"], first["grad_norm"], rtol=1e-4)


CRASHING_SCRIPT = """
import sys
import torch
sys.path.insert(0, {tests!r})
from test_huggingface import dataset, tiny_gpt2
import transformers
from diagnose.probe.integrations.huggingface import DiagnoseCallback

class Corrupt(torch.utils.data.Dataset):
    # The 25th record read (in the 7th batch of 4) is corrupt; accelerate reads one batch ahead: steps 0 to 4 are done.
    def __init__(self):
        self.rows, self.reads = dataset(64, 1), 0
    def __len__(self):
        return len(self.rows)
    def __getitem__(self, index):
        self.reads += 1
        if self.reads == 25:
            raise ValueError("corrupt record for the test")
        return self.rows[index]

args = transformers.TrainingArguments(
    output_dir={out!r}, max_steps=12, per_device_train_batch_size=4, learning_rate=3e-3, max_grad_norm=0.5,
    save_strategy="no", report_to=[], use_cpu=True, seed=0, disable_tqdm=True, dataloader_num_workers=0,
)
callbacks = [DiagnoseCallback({logs!r}, "hf", "crash", flush_every=4)] if sys.argv[1] == "probe" else []
transformers.Trainer(model=tiny_gpt2(), args=args, train_dataset=Corrupt(), callbacks=callbacks).train()
"""


def test_an_exception_that_ends_the_program_marks_the_run_crashed(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(CRASHING_SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path / "out"),
                                             logs=str(tmp_path / "logs")))
    stderr = {}
    for variant in ("probe", "plain"):
        done = subprocess.run([sys.executable, str(script), variant], capture_output=True, text=True, timeout=300)
        assert done.returncode == 1
        stderr[variant] = done.stderr[done.stderr.index("Traceback"):]
    # The user's exception reaches stderr with the same traceback as without the callback.
    assert stderr["probe"] == stderr["plain"]
    assert stderr["probe"].rstrip().splitlines()[-1] == "ValueError: corrupt record for the test"
    run = read(tmp_path / "logs" / "hf" / "crash", "hf")
    assert run.status == "crashed"
    assert run.steps["step"].tolist() == list(range(5))


def test_a_caught_exception_is_closed_as_crashed_by_the_next_train(tmp_path):
    class Boom(transformers.TrainerCallback):
        raised = False

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3 and not self.raised:
                self.raised = True
                raise RuntimeError("boom for the test")

    hook = sys.excepthook
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=6, per_device_train_batch_size=4, learning_rate=3e-3,
        max_grad_norm=0.5, save_strategy="no", report_to=[], use_cpu=True, seed=0, disable_tqdm=True,
    )
    callback = DiagnoseCallback(tmp_path / "logs", "hf", "retry")
    trainer = transformers.Trainer(model=tiny_gpt2(), args=args, train_dataset=dataset(64, 1),
                                   callbacks=[callback, Boom()])
    with pytest.raises(RuntimeError, match="boom for the test"):
        trainer.train()
    first = callback.probe
    assert first._meta["status"] == "running"  # caught: nothing ended the program
    trainer.train()
    assert first._meta["status"] == "crashed"
    run = read(tmp_path / "logs" / "hf" / "retry", "hf")
    assert run.status == "finished" and len(run.steps) == 6
    # The retry clips as asked: max_grad_norm was given back before the callback read it again.
    assert run.config["clip_norm"] == 0.5 and trainer.args.max_grad_norm == 0.5
    assert sys.excepthook is hook  # the chained hook is gone after on_train_end


def test_after_a_caught_crash_a_new_trainer_from_the_same_args_clips(tmp_path):
    def arguments():
        return transformers.TrainingArguments(
            output_dir=str(tmp_path / "out"), max_steps=6, per_device_train_batch_size=4, learning_rate=3e-3,
            max_grad_norm=0.5, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, seed=0,
            disable_tqdm=True,
        )

    def fail_third_forward(module, args, kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("out of memory, for the test")

    calls = []
    args = arguments()
    model = tiny_gpt2()
    model.register_forward_pre_hook(fail_third_forward, with_kwargs=True)
    with pytest.raises(RuntimeError, match="for the test"):  # in the middle of an update, after clipping was taken over
        transformers.Trainer(model=model, args=args, train_dataset=dataset(64, 1),
                             callbacks=[DiagnoseCallback(tmp_path / "logs", "hf", "oom")]).train()
    assert args.max_grad_norm == 0.5
    retry = transformers.Trainer(model=tiny_gpt2(), args=args, train_dataset=dataset(64, 1))
    retry.train()
    fresh = transformers.Trainer(model=tiny_gpt2(), args=arguments(), train_dataset=dataset(64, 1))
    fresh.train()
    assert max(h["grad_norm"] for h in retry.state.log_history if "grad_norm" in h) > 0.5  # clipping matters here
    for mine, theirs in zip(retry.model.parameters(), fresh.model.parameters()):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0)


def test_the_users_arguments_are_never_changed_while_training(tmp_path):
    class Spy(transformers.TrainerCallback):
        seen = []

        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            self.seen.append(args.max_grad_norm)

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=4, per_device_train_batch_size=4, learning_rate=3e-3,
        max_grad_norm=0.5, save_strategy="no", report_to=[], use_cpu=True, seed=0, disable_tqdm=True,
    )
    trainer = transformers.Trainer(model=tiny_gpt2(), args=args, train_dataset=dataset(64, 1),
                                   callbacks=[DiagnoseCallback(tmp_path / "logs", "hf", "spied"), Spy()])
    trainer.train()
    assert Spy.seen == [0.5] * 4 and trainer.args is args
    run = read(tmp_path / "logs" / "hf" / "spied", "hf")
    assert run.steps["grad_norm"].gt(0.5).any()  # the norm before clipping, not the clipped one
