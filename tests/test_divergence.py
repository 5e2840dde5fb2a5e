"""divergence on real small training runs (CPU, seconds) and on edge cases."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diagnose import signal
from diagnose.checks import divergence
from diagnose.readers import rundir

torch = pytest.importorskip("torch")


def train(folder, make_run, *, lr, steps=200, batch_size=64, momentum=0.0, seed=0, data_scale=1.0):
    """Train a small MLP regressor with SGD and log every step as diagnose.run/1."""
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    x = torch.randn(512, 8) * data_scale
    y = (x @ torch.randn(8, 1)).sin() + 0.1 * torch.randn(512, 1)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    make_run(folder, steps=None, config={"lr": lr, "momentum": momentum, "max_steps": steps, "seed": seed})
    with open(folder / "steps.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "loss", "grad_norm", "lr"])
        for step in range(steps):
            index = torch.randint(0, len(x), (batch_size,))
            loss = torch.nn.functional.mse_loss(model(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
            optimizer.step()
            writer.writerow([step, repr(loss.item()), repr(norm.item()), lr])
    return rundir.read(folder, "test")


def detect(run):
    return divergence.detect(run, divergence.Config())


def test_a_run_at_a_huge_lr_diverges_to_nan(tmp_path, make_run):
    run = train(tmp_path / "r", make_run, lr=3.0, data_scale=3.0)
    assert not np.isfinite(run.steps["loss"]).all()  # the run really diverged
    [finding] = detect(run)
    assert finding.severity.value == "error"
    first_bad = int(run.steps.loc[~np.isfinite(run.steps["loss"]) | ~np.isfinite(run.steps["grad_norm"]), "step"].min())
    assert finding.steps[0] <= first_bad
    assert finding.steps[1] == run.last_step


def test_a_linear_model_above_its_stability_limit_explodes(tmp_path, make_run):
    torch.manual_seed(1)
    x = torch.randn(256, 4)
    y = x @ torch.randn(4, 1)
    # Full-batch GD on least squares is stable below 2 / lambda_max of the Hessian.
    hessian = 2 * x.T @ x / len(x)
    limit = 2 / torch.linalg.eigvalsh(hessian).max().item()
    lr = 1.1 * limit
    w = torch.zeros(4, 1, requires_grad=True)
    make_run(tmp_path / "r", steps=None, config={"lr": lr})
    rows = ["step,loss"]
    for step in range(150):
        loss = ((x @ w - y) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            w -= lr * w.grad
            w.grad.zero_()
        rows.append(f"{step},{loss.item()!r}")
    (tmp_path / "r" / "steps.csv").write_text("\n".join(rows) + "\n")
    run = rundir.read(tmp_path / "r", "test")
    assert np.isfinite(run.steps["loss"]).all() and run.steps["loss"].iloc[-1] > 1e3 * run.steps["loss"].iloc[0]
    [finding] = detect(run)
    assert finding.severity.value == "error"
    assert "exploded" in finding.title
    assert finding.evidence["peak_loss"] > 1e3 * finding.evidence["start_loss"]


@pytest.mark.parametrize("batch_size, lr", [(4, 0.01), (64, 0.05)])
def test_healthy_runs_stay_quiet(tmp_path, make_run, batch_size, lr):
    run = train(tmp_path / "r", make_run, lr=lr, batch_size=batch_size, momentum=0.9, steps=300)
    loss = run.steps["loss"].to_numpy()
    assert np.isfinite(loss).all() and np.median(loss[-50:]) < np.median(loss[:50])  # really healthy
    assert detect(run) == []


def test_a_spike_that_recovers_is_not_divergence(tmp_path, make_run):
    loss = np.exp(-np.arange(300) / 80) + 0.05
    loss[150:160] *= 1e4
    steps = "step,loss\n" + "".join(f"{i},{v}\n" for i, v in enumerate(loss))
    run = rundir.read(make_run(tmp_path / "r", steps=steps), "test")
    assert detect(run) == []


def test_steps_an_amp_grad_scaler_skipped_are_not_divergence(tmp_path, make_run):
    rows = ["step,loss,grad_norm,skipped"]
    for i in range(100):
        skipped = i in (0, 1, 40)
        rows.append(f"{i},{1 / (1 + i / 10)!r},{'inf' if skipped else 1.0},{int(skipped)}")
    run = rundir.read(make_run(tmp_path / "r", steps="\n".join(rows) + "\n"), "test")
    assert detect(run) == []


def test_a_transient_nan_that_recovers_is_a_warning(tmp_path, make_run):
    rows = ["step,loss"] + [f"{i},{'nan' if i == 30 else 1 / (1 + i)}" for i in range(100)]
    run = rundir.read(make_run(tmp_path / "r", steps="\n".join(rows) + "\n"), "test")
    [finding] = detect(run)
    assert finding.severity.value == "warning" and finding.steps == (30, 30)


@pytest.mark.parametrize(
    "steps",
    ["step,loss\n", "step,loss\n0,1.5\n", "step,loss\n" + "".join(f"{i},2.0\n" for i in range(50))],
    ids=["empty", "single point", "constant"],
)
def test_edge_cases_stay_quiet(tmp_path, make_run, steps):
    run = rundir.read(make_run(tmp_path / "r", steps=steps), "test")
    assert detect(run) == []


def test_nan_at_step_zero_is_divergence(tmp_path, make_run):
    run = rundir.read(make_run(tmp_path / "r", steps="step,loss\n0,nan\n1,nan\n2,nan\n"), "test")
    [finding] = detect(run)
    assert finding.severity.value == "error" and finding.steps == (0, 2)


def test_a_run_stopped_as_diverged_is_reported(tmp_path, make_run):
    run = rundir.read(make_run(tmp_path / "r", status="diverged"), "test")
    [finding] = detect(run)
    assert "stopped as diverged" in finding.title


def test_momentum_with_batch_size_4_at_a_high_lr_explodes(tmp_path, make_run):
    run = train(tmp_path / "r", make_run, lr=0.05, batch_size=4, momentum=0.9, steps=300)
    [finding] = detect(run)
    assert finding.severity.value == "error" and "exploded" in finding.title
    assert finding.recommendation.action in {"warmup", "clip", "lr"}


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(3, 6000))
def test_the_last_smoothed_loss_needs_only_the_runs_tail(seed, n):
    # _explosion decides a run that ends low from its tail alone, before smoothing all of it
    logs = np.random.default_rng(seed).normal(size=n).round(1)
    size = signal.window(n, 0.01)
    assert signal.smooth(logs[-size:], size)[-1] == signal.smooth(logs, size)[-1]
