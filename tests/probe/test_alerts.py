"""Online alerts: ``on_alert`` fires on NaN/inf and on a loss explosion, ``stop_on`` ends the loop; healthy runs stay quiet."""

from __future__ import annotations

import time

import torch

from diagnose.probe import Probe, ProbeStop
from diagnose.readers.rundir import read
from probe_helpers import tiny_problem


def sgd_run(probe, lr, steps=60, ran=None):
    """Plain SGD on the tiny MLP at ``lr``; appends each finished step to ``ran``."""
    model, x, y = tiny_problem()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for step in range(steps):
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        probe.step(loss, opt)
        opt.step()
        opt.zero_grad()
        if ran is not None:
            ran.append(step)
            time.sleep(0.002)  # alerts come from the writer thread: give it a real step's time


def test_healthy_run_raises_no_alert(tmp_path):
    alerts = []
    with Probe(tmp_path, "s", "ok", flush_every=5, on_alert=alerts.append) as probe:
        sgd_run(probe, lr=0.05)
    assert alerts == [] and read(tmp_path / "s" / "ok", "s").status == "finished"


def test_nonfinite_loss_fires_once_on_the_training_thread(tmp_path):
    alerts = []
    with Probe(tmp_path, "s", "nan", flush_every=5, on_alert=alerts.append) as probe:
        for step in range(20):
            probe.step(torch.tensor(float("nan") if step >= 7 else 1.0))
    assert [(a.kind, a.step) for a in alerts] == [("nonfinite", 7)]
    assert read(tmp_path / "s" / "nan", "s").status == "diverged"


def test_divergent_sgd_stops_with_stop_on(tmp_path):
    alerts, ran = [], []
    with Probe(tmp_path, "s", "lr30", flush_every=5, on_alert=alerts.append,
               stop_on=("nonfinite", "explosion")) as probe:
        sgd_run(probe, lr=30.0, steps=500, ran=ran)
    assert len(ran) < 100  # stopped long before the 500 steps
    assert alerts and alerts[0].kind in ("nonfinite", "explosion")
    assert probe.should_stop
    assert read(tmp_path / "s" / "lr30", "s").status == "diverged"


def test_loss_explosion_without_nan_fires_explosion(tmp_path):
    alerts = []
    with Probe(tmp_path, "s", "boom", flush_every=5, on_alert=alerts.append) as probe:
        for step in range(30):
            probe.step(torch.tensor(2.0 if step < 10 else (0.5 if step < 20 else 5e3)))
    assert [(a.kind, a.step) for a in alerts] == [("explosion", 24)]


def test_stop_on_raises_outside_a_with_block(tmp_path):
    probe = Probe(tmp_path, "s", "raw", flush_every=2, stop_on="nonfinite")
    try:
        for step in range(10):
            probe.step(torch.tensor(float("inf")))
            time.sleep(0.01)
    except ProbeStop as stop:
        assert stop.alert.kind == "nonfinite" and step < 10
    else:
        raise AssertionError("ProbeStop was not raised")
    finally:
        probe.close()
