"""AMP on CPU: the logged norm is the unscaled one, before or after ``scaler.unscale_``; skipped steps are not divergence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diagnose.probe import Probe
from diagnose.readers.rundir import read
from probe_helpers import tiny_problem


def amp_loop(probe, steps=12, unscale_first=False, poison=()):
    """bf16 autocast + GradScaler on CPU; ``poison``: steps whose gradients get an inf. Returns reference norms."""
    model, x, y = tiny_problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    reference, scales = [], []
    for step in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = torch.nn.functional.mse_loss(model(x).float(), y)
        scaler.scale(loss).backward()
        if step in poison:
            model[0].weight.grad[0, 0] = float("inf")
        scales.append(scaler.get_scale())
        scaled_norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()]).item()
        reference.append(scaled_norm / scales[-1])
        if unscale_first:
            scaler.unscale_(opt)
        probe.step(loss, opt, scaler=scaler)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()
    return reference, scales


@pytest.mark.parametrize("unscale_first", [False, True])
def test_norm_is_unscaled(tmp_path, unscale_first):
    with Probe(tmp_path, "amp", "run", flush_every=5) as probe:
        reference, scales = amp_loop(probe, unscale_first=unscale_first)
    run = read(tmp_path / "amp" / "run", "amp")
    assert scales[0] == 1024.0  # the grads really were scaled
    np.testing.assert_allclose(run.steps["grad_norm"], reference, rtol=1e-5)
    assert (run.steps["skipped"] == 0).all()
    assert run.status == "finished"


def test_skipped_steps_are_recorded_and_not_divergence(tmp_path):
    alerts = []
    with Probe(tmp_path, "amp", "skips", flush_every=5, on_alert=alerts.append) as probe:
        reference, scales = amp_loop(probe, steps=12, poison=(3, 7))
    run = read(tmp_path / "amp" / "skips", "amp")
    assert scales[4] == scales[3] / 2  # the scaler skipped step 3 and backed off
    assert run.steps["skipped"].tolist() == [1.0 if s in (3, 7) else 0.0 for s in range(12)]
    assert run.status == "finished" and alerts == []
    finite = run.steps["skipped"] == 0
    np.testing.assert_allclose(run.steps["grad_norm"][finite], np.array(reference)[finite.to_numpy()], rtol=1e-5)
