"""``Probe``: a few lines in a PyTorch training loop that write a ``diagnose.run/1`` run directory.

Per step it records the loss, the unclipped global gradient norm (after AMP
unscaling), lr and momentum of the first parameter group, the time, and,
when the user clips, the threshold and whether the update was clipped.

It never waits for the device: the loss and the norm stay on the device as
0-dim tensors in a bounded buffer; every ``flush_every`` steps (or
``flush_seconds``) the buffer is stacked into one tensor, sharded norms are
summed over ranks in one collective, and one non-blocking copy goes to the
host. A background thread waits for that copy, writes the rows, and looks
for NaN/inf and loss explosions (alerts). Nothing raises into the training
loop after construction: a failure is one warning and training goes on.
"""

from __future__ import annotations

import atexit
import json
import math
import numbers
import time
import warnings
import weakref
from collections import deque
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist

from . import norms
from .files import CsvAppender, write_run_json
from .writer import Columns, Window, Writer, eval_columns, on_cpu, step_columns

_clock = time.perf_counter
STEP_COLUMNS = ["step", "loss", "grad_norm", "lr", "momentum", "time"]
ALERT_KINDS = ("nonfinite", "explosion")
FINAL_STATUSES = ("finished", "diverged", "crashed")
EXTRAS = ("param_norm", "update_norm", "layer_grad_norms")


class ProbeWarning(RuntimeWarning):
    """The probe could not do part of its work; training is not affected."""


@dataclass(frozen=True)
class Alert:
    """Something the probe saw at flush time that may be worth stopping for."""

    kind: str  # "nonfinite" or "explosion"
    step: int
    value: float
    message: str


class ProbeStop(Exception):
    """Raised by ``Probe.step`` after an alert whose kind is in ``stop_on``; ``with probe:`` absorbs it."""

    def __init__(self, alert: Alert):
        super().__init__(alert.message)
        self.alert = alert


class Probe:
    """Log one training run to ``logdir/study/name`` in the ``diagnose.run/1`` format.

    Args:
        logdir: the log root.
        study: the runs compared with each other (an lr sweep, a seed swarm).
        name: this run's name (its folder).
        config: hyperparameters (``lr``, ``momentum``, ``max_steps``, ``clip_norm``, ``seed``, ...).
        role: ``train``, ``short`` or ``lr_range``.
        model: the model; needed for FSDP1 (to know its sharded parameters) and for
            ``layer_grad_norms``.
        flush_every: steps per flush (one host copy, one collective when distributed).
        flush_seconds: also flush when this much time passed (single process only, so
            that ranks never disagree about when to meet in a collective).
        on_alert: called with an ``Alert`` on the training thread at the next call
            after a flush that saw NaN/inf (``nonfinite``) or a loss explosion.
        stop_on: alert kinds after which ``step`` raises ``ProbeStop`` (absorbed by ``with probe:``).
        explode_factor: a window's median loss above this times the best window
            median (and 10x the first) is an explosion.
        extra: optional columns: ``param_norm``, ``update_norm`` (keeps one copy of the
            parameters), ``layer_grad_norms`` (one column per module, needs ``model``).
        rank, world_size: default from ``torch.distributed``; only rank 0 writes.
        resume: continue the run in the folder (after a restart from a checkpoint)
            instead of starting it anew: rows are appended, and steps logged twice
            count once (the later row) when the run is read.
        first_step: the number of the first ``step`` call (default 0; on resume, the
            step after the last one logged). Integrations pass the trainer's global step.
    """

    def __init__(
        self,
        logdir: str | Path,
        study: str,
        name: str,
        config: dict | None = None,
        role: str = "train",
        *,
        model: torch.nn.Module | None = None,
        flush_every: int = 100,
        flush_seconds: float = 30.0,
        on_alert=None,
        stop_on=(),
        explode_factor: float = 100.0,
        extra=(),
        rank: int | None = None,
        world_size: int | None = None,
        resume: bool = False,
        first_step: int | None = None,
    ):
        if not isinstance(study, str) or not study or not isinstance(name, str) or not name:
            raise ValueError(f"study and name must be non-empty strings, got {study!r} and {name!r}")
        if not isinstance(role, str) or not role:
            raise ValueError(f"role must be a non-empty string (train, short, lr_range, ...), got {role!r}")
        if config is not None and not isinstance(config, dict):
            raise TypeError(f"config must be a dict, got {type(config).__name__}")
        if not isinstance(flush_every, int) or flush_every < 1:
            raise ValueError(f"flush_every must be a positive integer, got {flush_every!r}")
        stop_on = (stop_on,) if isinstance(stop_on, str) else tuple(stop_on)
        for kind in stop_on:
            if kind not in ALERT_KINDS:
                raise ValueError(f"stop_on: unknown alert kind {kind!r} (known: {', '.join(ALERT_KINDS)})")
        extra = (extra,) if isinstance(extra, str) else tuple(extra)
        for column in extra:
            if column not in EXTRAS:
                raise ValueError(f"extra: unknown column {column!r} (known: {', '.join(EXTRAS)})")
        if "layer_grad_norms" in extra and model is None:
            raise ValueError("extra 'layer_grad_norms' needs model= to name the layers")

        distributed = dist.is_available() and dist.is_initialized()
        self.rank = rank if rank is not None else (dist.get_rank() if distributed else 0)
        self.world_size = world_size if world_size is not None else (dist.get_world_size() if distributed else 1)
        self.folder = Path(logdir) / study / name
        self.flush_every = flush_every
        self.flush_seconds = math.inf if self.world_size > 1 else flush_seconds
        self.on_alert = on_alert
        self.stop_on = stop_on
        self.extra = extra
        self.model = model
        self.should_stop = False

        self._meta = {"name": name, "study": study, "role": role, "config": dict(config or {}), "status": "running"}
        self._warned: set[str] = set()
        self._alerts: deque[Alert] = deque()
        self._stop_alert: Alert | None = None
        self._rows = Columns()
        self._evals: list[dict] = []
        self._count = first_step if first_step is not None else 0
        self._resume = resume
        self._last_step: int | None = None
        self._start = _clock()
        self._flush_at = self._start + self.flush_seconds
        self._closed = False
        self._broken = False
        self._sharded_ids: set[int] | None = None
        self._plan: norms.Plan | None = None
        self._update_hooks = None

        files = self._create_files() if self.rank == 0 else None
        if files is not None and resume and first_step is None and files[0].last_key is not None:
            try:
                self._count = int(float(files[0].last_key)) + 1
            except ValueError:
                pass
        self._writer = Writer(
            files, self._meta, explode_factor=explode_factor, alert=self._alerts.append, warn=self._warn
        )
        self._writer.start()
        atexit.register(_close_at_exit, weakref.ref(self))

    # -- the loop's calls ------------------------------------------------------------------------

    def step(self, loss, optimizer=None, *, grad_norm=None, clip_norm=None, scaler=None, step: int | None = None):
        """Record one optimizer update; call after ``backward`` and before clipping and ``optimizer.step``.

        ``loss`` is the (unscaled) loss of the batch. The gradient norm is measured
        from ``optimizer``'s parameters, or taken from ``grad_norm`` (e.g. what
        ``clip_grad_norm_`` returned, with its ``clip_norm``). With an AMP ``scaler``
        the norm is unscaled and a step with inf/nan gradients is marked skipped.
        """
        if self._closed or self._broken:
            return
        try:  # the usual step (one plain Plan, no scaler, no extras) measures and records in this one frame
            if self._alerts:
                self._deliver_alerts()
            plan = self._plan
            if (grad_norm is None and scaler is None and not self.extra and plan is not None and plan.plain
                    and optimizer is plan.optimizer and optimizer.param_groups is plan.groups
                    and len(plan.groups) == plan.count):
                # Plan.measure and _record inlined: on the cache that a training step leaves, each Python call
                # costs ~1-3 us (the fused norm pass of the MLP in benchmarks/probe_overhead.py ~80 us).
                usual_cpu = plan.on_cpu and clip_norm is None
                try:
                    norm = torch._foreach_norm([p.grad for p in plan.params])
                    if not plan.listed:
                        norm = torch.stack(norm)
                except (TypeError, RuntimeError):  # a parameter without a gradient, or gradients on several devices
                    norm = norms.grad_norm(plan.params)
                    usual_cpu = False
                group = plan.groups[0]
                lr = group.get("lr")
                key = plan.momentum_key
                momentum = None if key is None else group[key] if key == "momentum" else group[key][0]
                if isinstance(lr, torch.Tensor) or isinstance(momentum, torch.Tensor):
                    lr, momentum = norms.by_value(lr), norms.by_value(momentum)
                    usual_cpu = False
                now = _clock()
                # Torch calls before the flush: a flush wakes the writer thread, which takes the GIL at the next one.
                # .data: detach() without the dispatcher (~1 us less), the same values.
                loss = loss.data if type(loss) is torch.Tensor else _number(loss, "loss")
                if clip_norm is not None:
                    clip_norm = _number(clip_norm, "clip_norm")
                rows = self._rows.rows
                if rows and (len(rows) >= self.flush_every or now >= self._flush_at):
                    self._flush()
                    rows = self._rows.rows
                number = self._count if step is None else int(step)
                self._count += 1
                self._last_step = number
                rows.append((number, loss, norm, lr, momentum, now - self._start, False, clip_norm))  # CORE's order
                if not usual_cpu:
                    self._rows.usual_cpu = False
            else:
                self._record(loss, self._measure(optimizer, grad_norm, scaler), clip_norm, step)
                self._rows.usual_cpu = False
        except Exception as error:  # noqa: BLE001 - the training loop must go on
            self._break(error)
        if self._stop_alert is not None:
            self._raise_stop()

    def measure(self, optimizer=None, *, grad_norm=None, scaler=None) -> tuple | None:
        """The first half of ``step``: norm, lr and momentum now, for hooks that see the loss later (integrations)."""
        if self._closed or self._broken:
            return None
        try:
            return self._measure(optimizer, grad_norm, scaler)
        except Exception as error:  # noqa: BLE001 - the training loop must go on
            self._break(error)
            return None

    def record(self, loss, measured: tuple | None, *, clip_norm=None, step: int | None = None) -> None:
        """The second half of ``step``: log ``loss`` with what ``measure`` returned."""
        if self._closed or self._broken or measured is None:
            return
        try:
            if self._alerts:
                self._deliver_alerts()
            self._record(loss, measured, clip_norm, step)
            self._rows.usual_cpu = False
        except Exception as error:  # noqa: BLE001
            self._break(error)
        if self._stop_alert is not None:
            self._raise_stop()

    def _raise_stop(self):
        alert, self._stop_alert = self._stop_alert, None
        raise ProbeStop(alert)

    def eval(self, split: str, loss=None, *, step: int | None = None, **metrics):
        """Record an evaluation on ``split`` at ``step`` (default: the last logged step); metrics as keywords."""
        if self._closed or self._broken:
            return
        try:
            number = int(step) if step is not None else (self._last_step if self._last_step is not None else 0)
            row = {"step": number, "split": str(split), "loss": _number(loss, "loss")}
            row.update({key: _number(value, key) for key, value in metrics.items()})
            self._evals.append(row)
        except Exception as error:  # noqa: BLE001
            self._break(error)

    def close(self, status: str = "finished") -> None:
        """Flush, wait for the writer, and set ``status`` (``diverged`` if NaN/inf was seen). Idempotent."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"status must be one of {', '.join(FINAL_STATUSES)}, got {status!r}")
        if self._closed:
            return
        self._closed = True
        try:
            if self._update_hooks is not None:
                for handle in self._update_hooks:
                    handle.remove()
            self._flush(crashed=status == "crashed")
        except Exception as error:  # noqa: BLE001 - the status below is still worth writing
            self._warn("close", f"could not write the last steps: {error!r}")
        try:
            self._writer.finish(status)
            self._writer.join(timeout=10)
            if self._writer.is_alive():
                self._warn("writer", "the log writer did not finish within 10 s; the last rows may be missing")
            self._deliver_alerts()
        except Exception as error:  # noqa: BLE001
            self._warn("close", f"could not close cleanly: {error!r}")

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if isinstance(error, ProbeStop):
            self.close("diverged")
            return True
        self.close("crashed" if error is not None else "finished")
        return False

    # -- measuring -------------------------------------------------------------------------------

    def _measure(self, optimizer, given, scaler) -> tuple:
        """(norm, lr, momentum, scaled, extras); the plain case (an optimizer, no scaler, no extras) comes first."""
        if optimizer is None:
            norm = norms.given_norm(given) if given is not None else None
            lr = momentum = None
        else:
            plan = self._plan
            if plan is None or not plan.fits(optimizer):
                plan = self._plan = norms.Plan(optimizer, self._sharded())
            norm, lr, momentum = plan.measure(given is None)
            if given is not None:
                norm = norms.given_norm(given)
            elif isinstance(norm, torch.Tensor):
                norm = norms.Norm(norm, None)
        if scaler is None:
            scaled = False
        else:
            scaled = scaler.is_enabled()
            if norm is not None:
                norm = norms.unscale(norm, scaler, optimizer)
        extras = self._extras(plan.params, optimizer) if self.extra and optimizer is not None else None
        return norm, lr, momentum, scaled, extras

    def _sharded(self) -> set[int]:
        if self._sharded_ids is None:
            self._sharded_ids = norms.sharded_params_of(self.model)
        return self._sharded_ids

    def _extras(self, params, optimizer) -> dict:
        extras = {}
        if "param_norm" in self.extra:
            extras["param_norm"] = norms.grad_norm(params, self._sharded(), of=lambda p: p.detach())
        if "layer_grad_norms" in self.extra:
            for layer, layer_params in _layers(self.model):
                norm = norms.grad_norm(layer_params, self._sharded())
                if norm is not None:
                    extras["grad_norm:" + layer] = norm
        if "update_norm" in self.extra and self._update_hooks is None:
            self._update_hooks = _watch_updates(optimizer, self)
        return extras

    def _record(self, loss, measured: tuple, clip_norm, step) -> None:
        now = _clock()
        # Torch calls before the flush: a flush wakes the writer thread, which takes the GIL at the next one.
        loss = loss.detach() if type(loss) is torch.Tensor else _number(loss, "loss")
        clip_norm = None if clip_norm is None else _number(clip_norm, "clip_norm")
        rows = self._rows.rows
        if rows and (len(rows) >= self.flush_every or now >= self._flush_at):
            # Flush before appending: the newest row stays open for its update_norm.
            self._flush()
            rows = self._rows.rows
        number = self._count if step is None else int(step)
        self._count += 1
        self._last_step = number
        norm, lr, momentum, scaled, extras = measured
        rows.append((number, loss, norm, lr, momentum, now - self._start, scaled, clip_norm))  # writer.CORE's order
        if extras:
            self._rows.set_last_row(extras)

    # -- flushing --------------------------------------------------------------------------------

    def _flush(self, crashed: bool = False) -> None:
        rows, self._rows = self._rows, Columns()
        evals, self._evals = self._evals, []
        self._flush_at = _clock() + self.flush_seconds
        if not len(rows) and not evals:
            return
        if self.world_size == 1 and rows.on_cpu() and on_cpu(eval_columns(evals)):
            # CPU values are final when their op returns: the writer thread packs them, off the training thread.
            self._writer.submit(partial(_pack, rows, evals))
            return
        steps = rows.data
        if self.world_size > 1 and crashed:
            # The other ranks may never join a collective now: a norm that needs one is left missing.
            for values in steps.values():
                values[:] = [None if isinstance(v, norms.Norm) and v.sharded_sumsq is not None else v for v in values]
        reduce = self.world_size > 1 and not crashed
        self._writer.submit(Window.pack(steps, evals, self.world_size if reduce else 1))

    # -- alerts and failures ---------------------------------------------------------------------

    def _deliver_alerts(self) -> None:
        while self._alerts:
            alert = self._alerts.popleft()
            if alert.kind in self.stop_on:
                self.should_stop = True
                if self._stop_alert is None and not self._closed:
                    self._stop_alert = alert
            if self.on_alert is not None:
                try:
                    self.on_alert(alert)
                except Exception as error:  # noqa: BLE001
                    self._warn("on_alert", f"on_alert raised {error!r}; training goes on")

    def _break(self, error: Exception) -> None:
        self._broken = True
        self._warn("broken", f"stopped logging after an internal error: {error!r}; training goes on")

    def _warn(self, key: str, message: str) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        warnings.warn(f"diagnose.probe ({self.folder}): {message}", ProbeWarning, stacklevel=3)

    def _create_files(self):
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if self._resume:
                self._meta["config"] = {**_old_config(self.folder), **self._meta["config"]}
            write_run_json(self.folder, self._meta)
            columns = STEP_COLUMNS + (["clip_norm", "clipped"] if self._meta["config"].get("clip_norm") else [])
            return CsvAppender(self.folder / "steps.csv", columns, resume=self._resume), self.folder, self._resume
        except OSError as error:
            self._warn("write", f"cannot write the run directory ({error}); training goes on without logging")
            return None

def _pack(rows: Columns, evals: list[dict]) -> tuple[dict, dict]:
    """The step columns as written and the eval columns of a window of CPU values (on the writer thread)."""
    packed = Window.pack_usual_cpu(rows.rows, evals) if rows.usual_cpu and not rows.extra else None
    if packed is None:
        steps, evals = Window.pack(rows.data, evals).resolve()
        packed = step_columns(steps), evals
    return packed


def _old_config(folder: Path) -> dict:
    try:
        config = json.loads((folder / "run.json").read_text(encoding="utf-8")).get("config")
    except (OSError, ValueError, AttributeError):
        return {}
    return config if isinstance(config, dict) else {}


def _number(value, what: str):
    """A tensor (detached, left on its device), a real number, or None; anything else is a TypeError."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if value is None or isinstance(value, numbers.Real):
        return value
    raise TypeError(f"{what} must be a tensor or a number, got {type(value).__name__}")


def _layers(model: torch.nn.Module):
    """(module name, its own parameters) for every module that holds parameters directly."""
    for name, module in model.named_modules():
        params = list(module.parameters(recurse=False))
        if params:
            yield name or "root", params


def _watch_updates(optimizer, probe: Probe):
    """Optimizer hooks that put ``||params after - params before||`` into the open row of the step."""
    snapshot: list[torch.Tensor] = []

    def before(opt, args, kwargs):
        params = [p.detach() for p in norms.params_of(opt)]
        if len(snapshot) != len(params) or any(s.shape != p.shape for s, p in zip(snapshot, params)):
            snapshot[:] = [p.clone() for p in params]
        else:
            torch._foreach_copy_(snapshot, params)

    def after(opt, args, kwargs):
        if len(probe._rows):
            params = norms.params_of(opt)
            deltas = dict(zip(map(id, params), torch._foreach_sub([p.detach() for p in params], snapshot)))
            norm = norms.grad_norm(params, probe._sharded(), of=lambda p: deltas[id(p)])
            probe._rows.set_last("update_norm", norm)

    return [optimizer.register_step_pre_hook(before), optimizer.register_step_post_hook(after)]


def _close_at_exit(reference) -> None:
    probe = reference()
    if probe is not None and not probe._closed:
        # The process ends without close(): keep the data; the status stays "running".
        probe._closed = True
        try:
            probe._flush(crashed=True)
            probe._writer.finish(None)
            probe._writer.join(timeout=10)
        except Exception:  # noqa: BLE001
            pass
