"""A Lightning ``Callback`` that writes the same run directory as ``Probe``.

    from diagnose.probe.integrations.lightning import DiagnoseCallback
    trainer = L.Trainer(..., callbacks=[DiagnoseCallback("logs", study="sweep", name="lr3e-4")])

Lightning calls ``on_before_optimizer_step`` after backward (and after AMP
unscaling) and before it clips: the norm, lr and momentum are measured
there. The loss arrives later, in ``on_train_batch_end``; with gradient
accumulation it is the mean over the micro-batches of the update.
Validation metrics that the module logs (``val_loss``, ``val_acc``, ...) are
taken from ``trainer.callback_metrics`` after each validation (split
``valid``; the ``val_``/``valid_``/``validation_`` prefix is dropped).
"""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import Callback

from ..probe import Probe, ProbeStop

_VALID_PREFIXES = ("validation_", "valid_", "val_", "validation/", "valid/", "val/")


class DiagnoseCallback(Callback):
    """Log a Lightning run to ``logdir/study/name`` (``diagnose.run/1``).

    ``config`` adds to (and overrides) what is read from the trainer and the
    first optimizer; other keyword arguments go to ``Probe``.
    """

    def __init__(self, logdir, study: str, name: str, config: dict | None = None, **probe_options):
        self.logdir, self.study, self.name = logdir, study, name
        self.config = dict(config or {})
        self.probe_options = probe_options
        self.probe: Probe | None = None
        self._measured = None
        self._losses: list[torch.Tensor] = []

    def on_train_start(self, trainer, pl_module):
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        group = optimizer.param_groups[0] if optimizer is not None else {}
        clip = self._clip(trainer)
        config = {
            "lr": group.get("initial_lr", group.get("lr")),
            "momentum": group.get("momentum", group.get("betas", (None,))[0]),
            "optimizer": type(optimizer).__name__.lower() if optimizer is not None else None,
            "max_steps": trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None,
            "weight_decay": group.get("weight_decay"),
            "clip_norm": clip,
        }
        config = {key: value for key, value in config.items() if value is not None} | {"clip_norm": clip}
        config.update(self.config)
        # A run resumed from a checkpoint continues its run directory at the checkpoint's step.
        options = {"resume": trainer.global_step > 0, "first_step": trainer.global_step, **self.probe_options}
        self.probe = Probe(self.logdir, self.study, self.name, config=config, model=pl_module, **options)

    @staticmethod
    def _clip(trainer) -> float | None:
        value = trainer.gradient_clip_val
        algorithm = getattr(trainer.gradient_clip_algorithm, "value", trainer.gradient_clip_algorithm)
        return float(value) if value and (algorithm is None or algorithm == "norm") else None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if self.probe is not None:
            scaler = getattr(trainer.precision_plugin, "scaler", None)
            self._measured = self.probe.measure(optimizer, scaler=scaler)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.probe is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self._losses.append(loss.detach())
        if self._measured is None:
            return  # an accumulation micro-batch: no update yet
        measured, self._measured = self._measured, None
        losses, self._losses = self._losses, []
        # Lightning hands over each micro-batch's loss divided by accumulate_grad_batches.
        loss = torch.stack(losses).mean() * trainer.accumulate_grad_batches if losses else None
        try:
            self.probe.record(loss, measured, clip_norm=self._clip(trainer))
        except ProbeStop:
            trainer.should_stop = True

    def on_validation_end(self, trainer, pl_module):
        if self.probe is None or trainer.sanity_checking:
            return
        values = {}
        for key, value in trainer.callback_metrics.items():
            for prefix in _VALID_PREFIXES:
                if key.startswith(prefix):
                    values[key[len(prefix):]] = value
        if values:
            loss = values.pop("loss", None)
            self.probe.eval("valid", loss=loss, **values)

    def on_train_end(self, trainer, pl_module):
        if self.probe is not None:
            self.probe.close("diverged" if self.probe.should_stop else "finished")

    def on_exception(self, trainer, pl_module, exception):
        if self.probe is not None:
            self.probe.close("crashed")
