"""The Lightning Callback on a tiny CPU module: pre-clip norm, lr, momentum, accumulated loss, validation, statuses."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

L = pytest.importorskip("lightning", reason="the Lightning integration test needs lightning")

from diagnose.probe.integrations.lightning import DiagnoseCallback  # noqa: E402
from diagnose.readers.rundir import read  # noqa: E402
from probe_helpers import tiny_problem  # noqa: E402


class Tiny(L.LightningModule):
    """The tiny MLP; records the reference norm (before clipping) and the micro-batch losses."""

    def __init__(self, crash_at=None):
        super().__init__()
        self.net, x, y = tiny_problem()
        self.data = torch.utils.data.TensorDataset(x, y)
        self.crash_at = crash_at
        self.norms, self.losses = [], []

    def training_step(self, batch, batch_idx):
        if self.crash_at is not None and batch_idx == self.crash_at:
            raise RuntimeError("crash for the test")
        loss = torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])
        self.losses.append(loss.item())
        return loss

    def validation_step(self, batch, batch_idx):
        loss = torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])
        self.log("val_loss", loss)
        self.log("val_mae", (self.net(batch[0]) - batch[1]).abs().mean())

    def on_before_optimizer_step(self, optimizer):
        self.norms.append(torch.nn.utils.get_total_norm([p.grad for p in self.parameters()]).item())

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.2, momentum=0.8)
        schedule = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.data, batch_size=4)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(self.data, batch_size=16)


def fit(module, tmp_path, name):
    trainer = L.Trainer(max_steps=10, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=0.3,
                        accumulate_grad_batches=2, val_check_interval=4, limit_val_batches=1,
                        num_sanity_val_steps=1, callbacks=[DiagnoseCallback(tmp_path, "pl", name, flush_every=3)])
    trainer.fit(module)


def test_run_directory_matches_the_module(tmp_path):
    module = Tiny()
    fit(module, tmp_path, "mlp")
    run = read(tmp_path / "pl" / "mlp", "pl")
    assert run.status == "finished"
    steps = run.steps
    assert steps["step"].tolist() == list(range(10))
    np.testing.assert_allclose(steps["grad_norm"], module.norms, rtol=1e-6)
    # Two micro-batches per update: the loss of an update is their mean.
    np.testing.assert_allclose(steps["loss"], np.mean(np.reshape(module.losses, (-1, 2)), axis=1), rtol=1e-6)
    np.testing.assert_allclose(steps["lr"], [0.2 * 0.5 ** (s // 3) for s in range(10)])
    assert (steps["momentum"] == 0.8).all() and (steps["clip_norm"] == 0.3).all()
    assert steps["clipped"].tolist() == [float(n > 0.3) for n in module.norms]
    assert run.evals["split"].tolist() == ["valid"] * 5  # no sanity-check row
    assert run.evals["step"].tolist() == [1, 3, 5, 7, 9]  # every 4 micro-batches = every 2 updates
    assert run.evals["loss"].notna().all() and run.evals["mae"].notna().all()
    assert run.config["lr"] == 0.2 and run.config["momentum"] == 0.8 and run.config["clip_norm"] == 0.3


def test_crash_marks_crashed(tmp_path):
    with pytest.raises(RuntimeError, match="crash for the test"):
        fit(Tiny(crash_at=7), tmp_path, "tiny")
    run = read(tmp_path / "pl" / "tiny", "pl")
    assert run.status == "crashed" and run.steps["step"].tolist() == [0, 1, 2]


class Manual(Tiny):
    """Manual optimization: the module steps its optimizer itself and returns no loss."""

    def __init__(self):
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        loss = torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])
        self.manual_backward(loss)
        opt.step()
        opt.zero_grad()


def test_manual_optimization_logs_norms_and_leaves_the_loss_missing(tmp_path):
    module = Manual()
    trainer = L.Trainer(max_steps=6, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        callbacks=[DiagnoseCallback(tmp_path, "pl", "manual")])
    trainer.fit(module)
    run = read(tmp_path / "pl" / "manual", "pl")
    assert run.status == "finished"  # a missing loss is not a NaN loss
    assert run.steps["step"].tolist() == list(range(6)) and run.steps["loss"].isna().all()
    np.testing.assert_allclose(run.steps["grad_norm"], module.norms, rtol=1e-6)


class Diverging(Tiny):
    """The loss turns NaN from batch 6 on."""

    def training_step(self, batch, batch_idx):
        time.sleep(0.01)  # alerts come from the writer thread: give it a real step's time
        loss = torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])
        return loss * float("nan") if batch_idx >= 6 else loss


def test_stop_on_stops_the_trainer(tmp_path):
    alerts = []
    trainer = L.Trainer(max_steps=60, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        callbacks=[DiagnoseCallback(tmp_path, "pl", "nan", flush_every=2, stop_on="nonfinite",
                                                    on_alert=alerts.append)])
    trainer.fit(Diverging())
    run = read(tmp_path / "pl" / "nan", "pl")
    assert [a.kind for a in alerts] == ["nonfinite"] and alerts[0].step == 6
    assert run.status == "diverged" and trainer.global_step < 20
