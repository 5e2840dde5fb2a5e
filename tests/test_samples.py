"""The bundled samples: readable without torch, with the studies, roles and configs the README promises,
showing the pathologies they claim (measured directly, not through the checks), and still regenerable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diagnose import read_root

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
STUDIES = {"lr_sweep", "lr_range", "healthy", "clipping", "overfitting", "spikes", "swarm"}
SWEEP_KEYS = {"lr", "momentum", "optimizer", "batch_size", "max_steps", "seed"}


@pytest.fixture(scope="module")
def samples():
    root = read_root(SAMPLES)
    return {run.key: run for run in root.runs}, root


def runs_of(samples, study, role="train"):
    runs, _ = samples
    return [run for run in runs.values() if run.study == study and run.role == role]


def test_every_sample_is_readable_and_small(samples):
    runs, root = samples
    assert root.unreadable == []
    assert {run.study for run in runs.values()} == STUDIES
    assert all(run.notes == [] for run in runs.values()), [run.notes for run in runs.values() if run.notes]
    size = sum(path.stat().st_size for path in SAMPLES.rglob("*") if path.is_file())
    assert size < 5_000_000


def test_lr_sweep_has_lrs_a_factor_3_apart_two_seeds_each_and_validation(samples):
    runs = runs_of(samples, "lr_sweep")
    for run in runs:
        assert SWEEP_KEYS <= run.config.keys(), run.name
        assert run.config["optimizer"] == "sgd" and run.config["momentum"] == 0.9
        assert len(run.valid_evals()) >= 10 or run.status == "diverged", run.name
    lrs = sorted({run.lr for run in runs})
    assert 5 <= len(lrs) <= 7
    assert np.allclose(np.diff(np.log10(lrs)), np.log10(3), atol=0.06)
    assert all(sorted(run.seed for run in runs if run.lr == lr) == [0, 1] for lr in lrs)


def final_valid(run) -> float:
    return float(run.valid_evals()["loss"].iloc[-1]) if run.status != "diverged" else np.inf


def test_lr_sweep_best_lr_is_interior_and_the_lrs_above_it_go_unstable(samples):
    runs = runs_of(samples, "lr_sweep")
    lrs = sorted({run.lr for run in runs})
    score = {lr: np.mean([final_valid(run) for run in runs if run.lr == lr]) for lr in lrs}
    best = min(score, key=score.get)
    assert lrs[0] < best < lrs[-2]
    (short,) = runs_of(samples, "lr_sweep", role="short")
    assert short.config["best_lr"] == best  # the short run was made at 2x this sweep's lr*
    above = [run for run in runs if run.lr > best]
    assert {run.status for run in runs if run.lr == lrs[-1]} == {"diverged"}
    for run in above:
        loss = run.steps["loss"].to_numpy()
        # unstable: the loss climbs back far above where it already was
        assert not np.isfinite(loss).all() or loss[20:].max() > 3 * np.min(loss[:200]), run.name
    for run in runs:
        if run.lr == best:
            loss = run.steps["loss"].to_numpy()
            assert loss[100:].max() < loss[:10].mean(), run.name


def test_short_run_is_2x_the_best_lr_evaluated_every_step_and_recovers(samples):
    (short,) = runs_of(samples, "lr_sweep", role="short")
    assert short.lr == pytest.approx(2 * short.config["best_lr"])
    assert 400 <= short.n_steps <= 600
    valid = short.valid_evals()
    assert len(valid) == short.n_steps
    loss = short.steps["loss"].to_numpy()
    assert loss[:50].max() > 2 * loss[0]  # early instability ...
    assert np.median(loss[-50:]) < loss[0] / 5  # ... then recovery


def test_lr_range_test_grows_lr_exponentially_until_the_loss_blows_up(samples):
    (run,) = runs_of(samples, "lr_range", role="lr_range")
    lr = run.steps["lr"].to_numpy()
    ratios = lr[1:] / lr[:-1]
    assert lr[0] == pytest.approx(1e-5) and np.allclose(ratios, ratios[0]) and ratios[0] > 1
    loss = run.steps["loss"].to_numpy()
    assert loss[-1] > 10 * loss.min() and loss.min() < loss[:20].mean() / 4


def test_healthy_run_decreases_cleanly(samples):
    (run,) = runs_of(samples, "healthy")
    loss = run.steps["loss"].to_numpy()
    valid = run.valid_evals()["loss"].to_numpy()
    assert run.status == "finished" and len(valid) >= 10
    assert np.all(np.diff(valid) < 0.01 * valid[:-1])  # validation never rises by more than 1%
    assert np.median(loss[-100:]) < loss[0] / 20


def test_clipping_clips_most_updates(samples):
    (run,) = runs_of(samples, "clipping")
    steps = run.steps
    assert run.config["clip_norm"] == pytest.approx(steps["clip_norm"].iloc[0])
    assert steps["clipped"].mean() > 0.5
    assert np.array_equal(steps["clipped"] == 1, steps["grad_norm"] > steps["clip_norm"])


def test_overfitting_valid_loss_turns_up_while_train_loss_falls(samples):
    (run,) = runs_of(samples, "overfitting")
    valid = run.valid_evals()
    lowest = int(valid["loss"].to_numpy().argmin())
    assert lowest < len(valid) // 4
    assert valid["loss"].iloc[-1] > 1.1 * valid["loss"].iloc[lowest]
    loss = run.steps["loss"].to_numpy()
    assert loss[-1] < loss[int(valid["step"].iloc[lowest])] / 100


def test_adam_runs_spike_mid_training_and_recover(samples):
    runs = runs_of(samples, "spikes")
    assert {run.config["optimizer"] for run in runs} == {"adam"} and len(runs) == 2
    for run in runs:
        loss = run.steps["loss"].to_numpy()
        best_so_far = np.minimum.accumulate(loss)
        jump = int(np.argmax(loss / best_so_far))
        assert loss[jump] > 1e6 * best_so_far[jump] and jump > run.n_steps // 2  # a sudden jump, late
        assert loss[-1] < loss[jump] / 1e6  # and it recovers
        assert run.steps["grad_norm"].iloc[jump] > 1e4 * np.median(run.steps["grad_norm"].iloc[jump - 200 : jump])


def rises(run) -> float:
    """The fraction of steps where the full-batch loss went up: near 0 for a damped descent."""
    return float(np.mean(np.diff(run.steps["loss"].to_numpy()) > 0))


def test_swarm_grid_and_the_high_momentum_cells_ring(samples):
    runs = runs_of(samples, "swarm")
    cells = {(run.momentum, run.lr) for run in runs}
    assert cells == {(m, lr) for m in (0.9, 0.95, 0.99) for lr in (0.002, 0.01)}
    for cell in cells:
        members = [run for run in runs if (run.momentum, run.lr) == cell]
        assert len(members) == 4 and all(run.config["batch_size"] == 61 for run in members)
    for lr in (0.002, 0.01):
        calm = max(rises(run) for run in runs if run.momentum == 0.9 and run.lr == lr)
        ringing = min(rises(run) for run in runs if run.momentum == 0.99 and run.lr == lr)
        assert calm < 0.05 and ringing > 0.3


def test_samples_are_read_and_analysed_without_torch(samples):
    blocked = (
        # Any import of torch now fails, as where torch is not installed (a None entry in
        # sys.modules would instead break libraries that look torch up there, e.g. scipy).
        "import importlib.abc, sys\n"
        "class NoTorch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError('torch is not installed')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from diagnose import analyze, read_root\n"
        f"root = read_root({str(SAMPLES)!r})\n"
        "analysis = analyze(root)\n"
        "print(len(root.runs), len(root.unreadable), len(analysis.document.findings))\n"
    )
    done = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    runs, unreadable, _ = map(int, done.stdout.split())
    assert runs == len(samples[0]) and unreadable == 0
    assert "torch" not in done.stderr


def test_the_generator_still_writes_readable_studies(tmp_path):
    pytest.importorskip("torch")
    script = SAMPLES / "make_samples.py"
    done = subprocess.run(
        [sys.executable, str(script), "--quick", "--out", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    root = read_root(tmp_path)
    assert root.unreadable == []
    assert {run.study for run in root.runs} == STUDIES
    roles = {run.role for run in root.runs}
    assert roles == {"train", "short", "lr_range"}
    diverged = [run for run in root.runs if run.status == "diverged"]
    assert [run.name for run in diverged] == ["lr3-s0"]
    assert all(run.n_steps > 0 for run in root.runs)
