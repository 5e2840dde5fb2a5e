"""The result of an LR range test: the largest lr at which the loss still falls, and the 1cycle bounds.

Detects:
For every run with ``role: lr_range`` (the lr grows every step and is logged
in the ``lr`` column): ``lr_max``, the largest lr at which the loss still
falls before it blows up, ``blowup_lr`` where it blows up, and the lower
bounds ``lr_min`` (cyclical schedules) and ``lr_min_1cycle``. A test whose
loss never blew up (the range stopped too early) or never fell (the range
started too high, or nothing trains) is a warning: its numbers are not
bounds.

Why:
Leslie Smith, "A disciplined approach to neural network hyper-parameters:
Part 1" (2018; seed 001): use the LR range test to find the maximum lr, the
largest value at which the model still converges; the minimum bound is 1/3
to 1/4 of it, or 1/10 to 1/20 of it for the 1cycle policy, which reaches
super-convergence with cyclical momentum from 0.95 down to 0.85. By eye,
users read the bottom of a noisy curve differently each time; LR finders
that take the steepest point of the raw curve jump between runs.

Algorithm:
Steps are ordered and cut at the first non-finite loss. Losses are floored
at ``floor_fraction`` (1%) of the starting loss (a loss 100x below its start
has stopped falling; log10 of a 0 loss would be noise) and taken in log10,
then smoothed twice over ``window_fraction`` (5%) of the points (at least 5):
a centered rolling median (ignores single noisy batches) and a centered
rolling mean (removes the median's steps). The loss has blown up at the
first point where the smoothed curve exceeds its running minimum by
``blowup_factor`` (2x: fastai's finder stops at 4x; halfway there the curve
is already clearly rising), or at the first NaN/inf loss, whichever comes
first; on a curve so noisy that ``noise_z`` (4) times the smoothed curve's
own noise (1.25 sigma / sqrt(window), sigma from the first differences'
median absolute deviation) is larger, that is the rise needed, and the drop
needed below. ``lr_max`` is the lr at the minimum of the smoothed curve before the
blow-up: the last lr at which it still fell. Over 4 seeds of a small MLP at
batch size 8 this gives 0.057-0.071, where the steepest point of the raw
curve ranges over 0.16-0.86. The loss must have fallen by at least
``min_drop`` (10%) from its start to its minimum, else no lr made it fall.
``lr_min`` = lr_max / ``min_divisor`` (4, the safe end of Smith's 3-4) and
``lr_min_1cycle`` = lr_max / ``one_cycle_divisor`` (10, the aggressive end
of 10-20; the recommendation states the range).

Example:
SGD (momentum 0.9) on a small MLP, lr from 1e-5 to 10 over 300 steps at
batch size 64: loss 1.4 flat to 1e-3, falls to 0.26 at lr 0.14, doubles from
lr 0.52 on: lr_max 0.14, lr_min 0.036, lr_min_1cycle 0.014, blowup_lr 0.52.

Recommends:
The 1cycle schedule (action ``schedule``): ``max_lr`` = lr_max,
``div_factor`` = one_cycle_divisor (initial lr = max_lr / div_factor),
cyclical momentum from ``max_momentum`` 0.95 down to ``base_momentum`` 0.85,
the arguments of ``torch.optim.lr_scheduler.OneCycleLR``; or, for a cyclical
schedule, lr between lr_min and lr_max.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from .. import rolling, signal
from ..findings import Finding, Recommendation, Severity, round_sig
from ..model import Run, Study
from .registry import Check, Scope


@dataclass(frozen=True)
class Config:
    window_fraction: float = 0.05
    window_minimum: int = 5
    floor_fraction: float = 0.01
    blowup_factor: float = 2.0
    min_drop: float = 0.1
    noise_z: float = 4.0
    min_divisor: float = 4.0
    one_cycle_divisor: float = 10.0
    min_points: int = 20
    min_span: float = 10.0
    max_momentum: float = 0.95
    base_momentum: float = 0.85


@dataclass(frozen=True)
class RangeResult:
    """What one LR range test says; ``lr_max`` None when the loss never fell."""

    lr_max: float | None
    blowup_lr: float | None
    start_loss: float
    best_loss: float
    max_step: int | None
    blowup_step: int | None
    lr_first: float
    lr_last: float


def applies(study: Study) -> str | None:
    if not study.by_role("lr_range"):
        return "no run with role lr_range"
    return None


def detect(study: Study, config: Config) -> list[Finding]:
    findings = []
    for run in study.by_role("lr_range"):
        finding = _check_run(run, config)
        if finding is not None:
            findings.append(finding)
    return findings


def analyse(steps: np.ndarray, lrs: np.ndarray, loss: np.ndarray, config: Config) -> RangeResult | None:
    """lr_max and the blow-up of one range test; None when too short.

    Arrays are sorted by step; a NaN/inf loss means the run broke (drop losses
    that were merely not logged before calling).
    """
    keep = np.isfinite(lrs) & (lrs > 0)
    steps, lrs, loss = steps[keep], lrs[keep], loss[keep]
    broken = ~np.isfinite(loss)
    end = int(np.argmax(broken)) if broken.any() else len(loss)
    if end < config.min_points:
        return None
    size = signal.window(end, config.window_fraction, minimum=config.window_minimum)
    head = loss[: end]
    start_loss = float(np.median(head[:size]))
    if start_loss > 0 and (head > 0).all():
        level = np.log10(np.maximum(head, start_loss * config.floor_fraction))
        blowup_rise = np.log10(config.blowup_factor)
        drop_needed = -np.log10(1 - config.min_drop)
    else:
        # Losses that are not all positive have no ratios: work on the values, relative to the start.
        scale = abs(start_loss) or 1.0
        level = head / scale
        blowup_rise = config.blowup_factor - 1
        drop_needed = config.min_drop
    smooth = rolling.mean(signal.smooth(level, size), size, center=True, min_periods=1)
    # The smoothed curve's own noise (white-noise sigma from first differences, over the window):
    # a curve noisier than the fixed factors needs a larger rise or drop to count.
    sigma = signal.robust_scale(np.diff(level)) / np.sqrt(2) * 1.25 / np.sqrt(size)
    if np.isfinite(sigma):
        blowup_rise = max(blowup_rise, config.noise_z * sigma)
        drop_needed = max(drop_needed, config.noise_z * sigma)
    risen = smooth > np.minimum.accumulate(smooth) + blowup_rise
    blowup = int(np.argmax(risen)) if risen.any() else (end if end < len(loss) else None)
    before = smooth[: blowup if blowup is not None else end]
    # The first point at the minimum: on a loss floored at 1% of its start the bottom is flat,
    # and the loss stopped falling where it reached it.
    bottom = int(np.argmax(before <= before.min() + 1e-6))
    best_loss = float(np.median(head[max(0, bottom - size // 2) : bottom + size // 2 + 1]))
    fell = smooth[0] - smooth[bottom] >= drop_needed
    return RangeResult(
        lr_max=float(lrs[bottom]) if fell else None,
        blowup_lr=float(lrs[blowup]) if blowup is not None else None,
        start_loss=start_loss,
        best_loss=best_loss,
        max_step=int(steps[bottom]) if fell else None,
        blowup_step=int(steps[blowup]) if blowup is not None else None,
        lr_first=float(lrs[0]),
        lr_last=float(lrs[end - 1]),
    )


def _check_run(run: Run, config: Config) -> Finding | None:
    if not run.has("lr"):
        return _finding(
            run, Severity.WARNING, None,
            title=f"{run.name}: LR range test without an lr column",
            detail="The run is marked role lr_range but its steps.csv logs no `lr`, so the loss cannot be read "
            "against the learning rate. Log the lr of every step.",
        )
    updates = run.updates()
    # A NaN the log wrote means the run broke; a value that was not logged is dropped.
    written_nan = np.isin(updates["step"].to_numpy(), run.nan_steps.get("loss", []))
    updates = updates[updates["loss"].notna().to_numpy() | written_nan]
    steps = updates["step"].to_numpy()
    loss = updates["loss"].to_numpy(dtype=float)
    lrs = updates["lr"].to_numpy(dtype=float)
    result = analyse(steps, lrs, loss, config)
    if result is None:
        return _finding(
            run, Severity.WARNING, None,
            title=f"{run.name}: LR range test too short to read",
            detail=f"Fewer than {config.min_points} finite losses with a positive lr before the loss broke; "
            "an LR range test needs a few hundred steps over several orders of magnitude of lr.",
        )
    span = result.lr_last / result.lr_first
    evidence = {
        "run": run.name,
        "lr_max": _sig(result.lr_max),
        "lr_min": _sig(result.lr_max and result.lr_max / config.min_divisor),
        "lr_min_1cycle": _sig(result.lr_max and result.lr_max / config.one_cycle_divisor),
        "blowup_lr": _sig(result.blowup_lr),
        "lr_max_step": result.max_step,
        "blowup_step": result.blowup_step,
        "start_loss": result.start_loss,
        "best_loss": result.best_loss,
        "lr_span": [result.lr_first, result.lr_last],
    }
    steps = (int(steps[0]), int(steps[-1]))
    if span < config.min_span:
        return _finding(
            run, Severity.WARNING, steps, evidence=evidence,
            title=f"{run.name}: the lr grew only {span:.3g}x, too little for an LR range test",
            detail=f"The logged lr goes from {result.lr_first:.3g} to {result.lr_last:.3g}. An LR range test "
            "sweeps the lr over several orders of magnitude (e.g. 1e-5 to 10) in one short run.",
        )
    if result.lr_max is None:
        return _finding(
            run, Severity.WARNING, steps, evidence=evidence,
            title=f"{run.name}: the loss never fell in the LR range test",
            detail=f"From lr {result.lr_first:.3g} to {result.lr_last:.3g} the smoothed loss never went "
            f"{config.min_drop:.0%} below its start ({result.start_loss:.4g}). Start the range at a lower lr, "
            "or check that the model trains at all.",
        )
    lr_max = round_sig(result.lr_max)
    lr_min = round_sig(result.lr_max / config.min_divisor)
    lr_min_1cycle = round_sig(result.lr_max / config.one_cycle_divisor)
    recommendation = Recommendation(
        action="schedule",
        values={
            "schedule": "1cycle",
            "max_lr": lr_max,
            "div_factor": config.one_cycle_divisor,
            "initial_lr": lr_min_1cycle,
            "max_momentum": config.max_momentum,
            "base_momentum": config.base_momentum,
            "cycle_momentum": True,
            "cyclic_lr_range": [lr_min, lr_max],
        },
        why=(
            f"Smith's 1cycle policy: lr from {lr_min_1cycle:g} (lr_max/{config.one_cycle_divisor:g}; "
            f"/10 to /20 works) up to {lr_max:g} and back down, momentum cycling "
            f"{config.max_momentum:g} -> {config.base_momentum:g} -> {config.max_momentum:g}: "
            f"OneCycleLR(optimizer, max_lr={lr_max:g}, total_steps=..., div_factor={config.one_cycle_divisor:g}, "
            f"max_momentum={config.max_momentum:g}, base_momentum={config.base_momentum:g}). For a cyclical "
            f"schedule use lr between {lr_min:g} and {lr_max:g}"
        ),
    )
    if result.blowup_lr is None:
        return _finding(
            run, Severity.WARNING, steps, evidence=evidence, recommendation=recommendation,
            title=f"{run.name}: the LR range test ended before the loss blew up; lr_max >= {lr_max:g}",
            detail=f"The smoothed loss fell from {result.start_loss:.4g} to {result.best_loss:.4g} and was still "
            f"at its lowest near the end of the range (lr {result.lr_last:.3g}): lr_max is only a lower bound. "
            "Extend the range to higher lrs until the loss blows up.",
        )
    return _finding(
        run, Severity.INFO, (result.max_step, result.blowup_step), evidence=evidence, recommendation=recommendation,
        title=f"{run.name}: LR range test: lr_max {lr_max:g}, lr_min {lr_min:g} (1cycle: {lr_min_1cycle:g})",
        detail=(
            f"The smoothed loss fell from {result.start_loss:.4g} to {result.best_loss:.4g} at lr {lr_max:g} "
            f"(step {result.max_step}) and blew up from lr {result.blowup_lr:.3g} (step {result.blowup_step}, "
            f"{config.blowup_factor:g}x its best or NaN/inf). lr_min = lr_max/{config.min_divisor:g}; "
            f"for 1cycle lr_max/{config.one_cycle_divisor:g}."
        ),
    )


def _finding(run: Run, severity: Severity, steps, *, title: str, detail: str, evidence=None, recommendation=None):
    return Finding(
        check="lr_range",
        severity=severity,
        study=run.study,
        runs=(run.name,),
        steps=steps,
        title=title,
        detail=detail,
        evidence=evidence or {"run": run.name},
        recommendation=recommendation,
    )


def _sig(value):
    return round_sig(value, 3) if value is not None else None


CHECK = Check(
    id="lr_range", scope=Scope.STUDY, detect=detect, config=Config(), module=sys.modules[__name__], applies=applies
)
