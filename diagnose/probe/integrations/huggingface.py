"""A Hugging Face ``TrainerCallback`` that writes the same run directory as ``Probe``.

    from diagnose.probe.integrations.huggingface import DiagnoseCallback
    trainer = Trainer(..., callbacks=[DiagnoseCallback("logs", study="sweep", name="lr3e-4")])

The Trainer clips before any callback sees the gradients, and the norm it
logs (``grad_norm``, every ``logging_steps``) is the one ``clip_grad_norm_``
returned, before clipping. The callback reads that same value each update:
for the run, the Trainer's ``accelerator.clip_grad_norm_`` is wrapped to keep
what it returned (the Trainer is found on the call stack: callbacks are handed
its arguments, not itself). Clipping stays the Trainer's, with the user's
``TrainingArguments`` untouched, on every transformers version (4.x reads
``max_grad_norm`` from a local copy of its arguments, 5.x from ``self.args``).
No callback receives the per-step loss either: a forward hook
reads the model output's ``loss`` in training mode, averaged over the
micro-batches of one update (summed when the Trainer normalises by the
number of items in the whole batch). Evaluations come from
``on_evaluate``'s metrics (``eval_loss`` -> split ``valid``).

The Trainer has no exception hook: while it trains, the callback chains a
hook to ``sys.excepthook`` and ``threading.excepthook``, so that an
exception that ends the program marks the run ``crashed`` (after the
previous hook printed it, unchanged). An exception that the caller catches
is seen at the next ``train()`` with this callback, which closes the run as
``crashed`` before it starts.
"""

from __future__ import annotations

import numbers
import sys
import threading
import warnings

import torch
from transformers import Trainer, TrainerCallback

from ..probe import Probe, ProbeStop, ProbeWarning

_NOT_METRICS = {"epoch", "runtime", "samples_per_second", "steps_per_second", "model_preparation_time"}


class DiagnoseCallback(TrainerCallback):
    """Log a ``transformers.Trainer`` run to ``logdir/study/name`` (``diagnose.run/1``).

    ``config`` adds to (and overrides) what is read from ``TrainingArguments``;
    other keyword arguments go to ``Probe`` (``flush_every``, ``on_alert``, ``stop_on``, ...).
    """

    def __init__(self, logdir, study: str, name: str, config: dict | None = None, **probe_options):
        self.logdir, self.study, self.name = logdir, study, name
        self.config = dict(config or {})
        self.probe_options = probe_options
        self.probe: Probe | None = None
        self._clip: float | None = None
        self._accelerator = None  # the Trainer's, while its clip_grad_norm_ is wrapped
        self._unwrapped = None  # what its instance held before (None: the class's own method)
        self._norm = None  # what it returned for this update: the norm before clipping
        self._missed_norm = False
        self._hook = None
        self._losses: list[torch.Tensor] = []
        self._summed = False
        self._unhook_exceptions = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._end("crashed")  # an earlier train() that raised never reached on_train_end
        config = {
            "lr": args.learning_rate,
            "momentum": args.adam_beta1,
            "optimizer": str(getattr(args.optim, "value", args.optim)),
            "batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size,
            "max_steps": state.max_steps,
            "warmup_steps": args.get_warmup_steps(state.max_steps),
            "weight_decay": args.weight_decay,
            "clip_norm": args.max_grad_norm if args.max_grad_norm and args.max_grad_norm > 0 else None,
            "seed": args.seed,
            "schedule": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
        }
        config.update(self.config)
        # A run resumed from a checkpoint continues its run directory at the checkpoint's step.
        options = {"resume": state.global_step > 0, "first_step": state.global_step, **self.probe_options}
        self.probe = Probe(self.logdir, self.study, self.name, config=config, model=model, **options)
        if config["clip_norm"] is not None and not args.deepspeed:
            self._clip = args.max_grad_norm
            trainer = _trainer_calling(args)
            if trainer is None:
                warnings.warn("diagnose: DiagnoseCallback was not called by a Trainer; the logged gradient norm is "
                              "the clipped one", ProbeWarning, stacklevel=2)
            else:
                self._accelerator = trainer.accelerator
                self._unwrapped = self._accelerator.__dict__.get("clip_grad_norm_")
                self._accelerator.clip_grad_norm_ = self._keep_norm(self._accelerator.clip_grad_norm_)
        if model is not None:
            self._hook = model.register_forward_hook(self._catch_loss, with_kwargs=True)
        self._unhook_exceptions = _on_uncaught_exception(threading.get_ident(), self.probe)

    def _keep_norm(self, clip_grad_norm_):
        """``clip_grad_norm_`` that also keeps the norm it returns when it clips at the run's threshold."""

        def clip_and_keep(parameters, max_norm, *args, **kwargs):
            norm = clip_grad_norm_(parameters, max_norm, *args, **kwargs)
            if max_norm == self._clip:  # not the Trainer's unclipped measurement (max_norm inf)
                self._norm = norm
            return norm

        return clip_and_keep

    def _catch_loss(self, module, args, kwargs, output):
        if not module.training:
            return
        loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
        if isinstance(loss, torch.Tensor):
            self._losses.append(loss.detach())
            self._summed = kwargs.get("num_items_in_batch") is not None

    def on_pre_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs):
        if self.probe is None:
            return
        inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps it
        scaler = getattr(optimizer, "scaler", None)
        norm, self._norm = self._norm, None
        if self._accelerator is not None and norm is None and not self._missed_norm:
            # apex, SageMaker MP or mixed-mesh gradients clip by other paths: measured now, after clipping
            self._missed_norm = True
            warnings.warn("diagnose: the Trainer clipped without accelerate's clip_grad_norm_; the logged gradient "
                          "norm is the clipped one", ProbeWarning, stacklevel=2)
        measured = self.probe.measure(inner, grad_norm=norm, scaler=scaler)
        losses, self._losses = self._losses, []
        if losses:
            loss = torch.stack(losses).sum() if self._summed else torch.stack(losses).mean()
        else:
            loss = None  # a custom compute_loss that the model's output does not show: missing, not NaN
        try:
            self.probe.record(loss, measured, clip_norm=self._clip)
        except ProbeStop:
            control.should_training_stop = True

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.probe is None or not metrics:
            return
        values = {}
        for key, value in metrics.items():
            short = key.removeprefix("eval_")
            if short not in _NOT_METRICS and isinstance(value, numbers.Real) and not isinstance(value, bool):
                values[short] = value
        loss = values.pop("loss", None)
        self.probe.eval("valid", loss=loss, **values)

    def on_step_end(self, args, state, control, **kwargs):
        if self.probe is not None and self.probe.should_stop:
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        self._end("diverged" if self.probe is not None and self.probe.should_stop else "finished")

    def _end(self, status: str) -> None:
        """Close the run with ``status`` and give the Trainer its own ``clip_grad_norm_`` back."""
        if self._unhook_exceptions is not None:
            self._unhook_exceptions()
            self._unhook_exceptions = None
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self._accelerator is not None:
            if self._unwrapped is None:
                del self._accelerator.clip_grad_norm_
            else:
                self._accelerator.clip_grad_norm_ = self._unwrapped
            self._accelerator = self._unwrapped = None
        self._clip = self._norm = None
        if self.probe is not None:
            self.probe.close(status)


def _trainer_calling(args):
    """The Trainer whose callbacks are being called with ``args``: callbacks are handed its arguments, not itself."""
    frame = sys._getframe(1)
    while frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, Trainer) and owner.args is args:
            return owner
        frame = frame.f_back
    return None


def _on_uncaught_exception(thread: int, probe: Probe):
    """Chain hooks that close ``probe`` as ``crashed`` when an exception ends ``thread``; returns the undo."""
    previous_sys, previous_threading = sys.excepthook, threading.excepthook
    active = True

    def sys_hook(kind, value, traceback):
        try:
            previous_sys(kind, value, traceback)
        finally:
            if active and threading.get_ident() == thread:
                probe.close("crashed")

    def threading_hook(hook_args):
        try:
            previous_threading(hook_args)
        finally:
            if active and hook_args.thread is not None and hook_args.thread.ident == thread:
                probe.close("crashed")

    sys.excepthook, threading.excepthook = sys_hook, threading_hook

    def undo():
        nonlocal active
        active = False
        # Restore only where nobody chained after us; otherwise our hooks stay, inactive, in their chain.
        if sys.excepthook is sys_hook:
            sys.excepthook = previous_sys
        if threading.excepthook is threading_hook:
            threading.excepthook = previous_threading

    return undo
