"""A short probe run (e.g. ~500 steps at 2x lr*, evaluated every step) shows instability, even if it recovered.

Detects:
Every run with ``role: short`` whose training loss has a period where it
goes up instead of down relative to its own noise
(``diagnose.instability``), including early instability followed by a
recovery whose end looks fine; when the run is evaluated densely, the
validation loss's periods over the same steps are shown with it. The run is
compared with the study's lr* run(s) over the same steps.

Why:
Deep Learning Tuning Playbook (seed 002): "Some models show very early
instability followed by a recovery that results in slow but stable
training. Common evaluation schedules can miss these issues by not
evaluating frequently enough! To check for this, you can train for an
abbreviated run of just ~500 steps using lr = 2 * current best, but
evaluate every step." Judging such a run by its end misses exactly this.

Algorithm:
The training loss of the short run (applied updates) is searched by
``diagnose.instability``: a period is where the loss smoothed over 3, 9,
27, ... points rises above its best level so far by more than 8 noise
sigmas of the run and by more than 5%; it recovered when the loss came
back to that level. Every event of the run is reported (the run is short:
all of it is "early"). With at least ``min_eval_points`` (20) validation
evals, the validation loss is searched the same way, and its periods that
start while a training-loss period does (within its length) join it; a validation loss that rises
while the training loss falls is overfitting, not instability, and is
left to the overfitting check. When the run is too noisy for any
period to stand out against its own noise, it is held against lr*
instead: its training loss, smoothed by a rolling median over 5% of its
points (``lag_window_fraction``), staying ``lag_factor`` (2x) above the lr*
runs' smoothed loss at the same steps for at least that window, starting
in the first 10% of the run (``lag_early_fraction``), and back below 2x by
its end, is early instability followed by recovery. lr* and its runs come from
``diagnose.sweep``; their events over the short run's steps are reported
alongside, so the plot can show both.

Example:
A width-1024 ReLU net, plain SGD, lr* = 4 from a sweep of 2 and 4; the
500-step run at lr 8 (evaluated every step) catapults from 3.5 to 133 (38x)
over steps 2-6 and is back at step 7, ending at 0.14 against lr*'s 0.10: one
warning with periods {"short-lr8": [[2, 6]]}, recovered at step 7, warmup
experiment base_lr 80, warmup_steps [10, 50].

Recommends:
Warmup (action ``warmup``), the Playbook's experiment for early
instability: base_lr = 10x the short run's (unstable) lr, warmup_steps at
10, 100, 1000, ... up to 10% of the full run's max_steps (the lr* run's),
post_warmup_steps = 2 x warmup_steps, max_steps extended by the warmup.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from .. import signal
from ..findings import Finding, Severity
from ..instability import InstabilityEvent, find_instability, run_instability
from ..model import Run, Study
from ..sweep import end_loss, main_sweep
from .registry import Check, Scope
from .unstable_above_best_lr import warmup_recommendation


@dataclass(frozen=True)
class Config:
    min_eval_points: int = 20
    lag_factor: float = 2.0
    lag_window_fraction: float = 0.05
    lag_early_fraction: float = 0.1


def applies(study: Study) -> str | None:
    if not study.by_role("short"):
        return "no run with role short"
    return None


def detect(study: Study, config: Config) -> list[Finding]:
    sweep = main_sweep(study)
    best = sweep.best if sweep is not None else None
    if best is None:
        # A study of one lr (no sweep) still has an lr*: its only lr, when that run did not diverge.
        trains = [run for run in study.runs if run.role not in ("short", "lr_range") and run.lr is not None]
        lrs = {run.lr for run in trains}
        best_runs = trains if len(lrs) == 1 else []
    else:
        best_runs = best.runs
    best_lr = best_runs[0].lr if best_runs else None
    findings = []
    for run in study.by_role("short"):
        finding = _check_run(study, run, best_runs, best_lr, config)
        if finding is not None:
            findings.append(finding)
    return findings


def _check_run(study: Study, run: Run, best_runs: list[Run], best_lr, config: Config) -> Finding | None:
    train_events = run_instability(run)
    # Against lr* only when the run's own noise hides its rises: the detector's periods are sharper.
    lag = [] if train_events else _lag_periods(run, best_runs, config)
    if not train_events and not lag:
        return None
    # A validation loss that rises while the training loss falls is overfitting, not instability:
    # the dense evals only confirm and sharpen the training loss's periods.
    valid_events = [e for e in _valid_events(run, config) if any(_together(e, t) for t in train_events)]
    periods = _merge([e.period for e in train_events + valid_events] + [p for p, _ in lag])
    last = run.last_step or 0
    # The lr* runs' own periods over the same steps (each short-run period widened by its length).
    best_events = {
        other.name: [e.to_dict() for e in run_instability(other) if any(_overlaps(e, p) for p in periods)]
        for other in best_runs
    }
    worst = max(train_events + valid_events, key=lambda e: (e.nonfinite, e.size_noise), default=None)
    recovered = all(e.recovered for e in train_events)
    recovery_step = train_events[0].recovery_step if train_events else lag[0][0][1] + 1
    ratio = run.lr / best_lr if run.lr and best_lr else None
    end = end_loss(run)
    best_end = float(np.median([end_loss(r, last) for r in best_runs])) if best_runs else float("nan")
    at = f"lr {run.lr:g}" + (f" ({ratio:.3g}x lr* {best_lr:g})" if ratio else "") if run.lr else "its lr"
    where = "early " if periods[0][0] <= 0.1 * max(last, 1) else ""
    outcome = f"then recovered at step {recovery_step}" if recovery_step is not None else "and did not recover"
    more = f" (+{len(periods) - 1} more period{'s' if len(periods) > 2 else ''})" if len(periods) > 1 else ""
    title = (
        f"{run.name}: short run at {at} shows {where}instability at steps {periods[0][0]}-{periods[0][1]}, "
        f"{outcome}{more}"
    )
    compare = ""
    if best_runs:
        unstable_best = [name for name, events in best_events.items() if events]
        compare = (
            f" The lr* run{'s' if len(best_runs) > 1 else ''} ({', '.join(r.name for r in best_runs)}) "
            + ("show" if len(best_runs) > 1 else "shows")
            + (f" instability too ({', '.join(unstable_best)})." if unstable_best else " no such period over the same steps.")
        )
        if np.isfinite(end) and np.isfinite(best_end):
            compare += f" At step {last} its smoothed training loss is {end:.4g} against lr*'s {best_end:.4g}."
    lagging = "".join(
        f" Its smoothed loss stayed {factor:.3g}x above lr*'s over steps {start}-{end}, then caught up."
        for (start, end), factor in lag
    )
    detail = (
        "Training loss: " + ("; ".join(e.describe() for e in train_events) or "no period above its own noise")
        + ("." + lagging if lagging else "")
        + (". Validation loss (evaluated every step): " + "; ".join(e.describe() for e in valid_events)
           if valid_events else "")
        + "." + compare
        + (" Its end looks fine, which is exactly what an infrequent evaluation would have seen."
           if recovered else "")
    )
    evidence = {
        "periods": {run.name: periods},
        "recovered": recovered,
        "recovery_step": recovery_step,
        "lr": run.lr,
        "best_lr": best_lr,
        "lr_ratio": ratio,
        "best_runs": [r.name for r in best_runs],
        "best_run_events": best_events,
        "train_events": [e.to_dict() for e in train_events],
        "valid_events": [e.to_dict() for e in valid_events],
        "worst_ratio": worst.ratio if worst else max(factor for _, factor in lag),
        "lag_periods": [{"steps": period, "factor": factor} for period, factor in lag],
        "end_loss": end,
        "best_end_loss": best_end,
    }
    recommendation = None
    if run.lr:
        recommendation = warmup_recommendation(
            run.lr, best_runs or [run], f"the short run at lr {run.lr:g} is unstable {where}in training"
        )
    return Finding(
        check="short_run_instability",
        severity=Severity.WARNING,
        study=study.name,
        runs=(run.name, *(r.name for r in best_runs)),
        steps=(periods[0][0], periods[-1][1]),
        title=title,
        detail=detail,
        evidence=evidence,
        recommendation=recommendation,
    )


def _lag_periods(run: Run, best_runs: list[Run], config: Config) -> list[tuple[list[int], float]]:
    """Where the short run's smoothed loss stayed ``lag_factor`` x above the lr* runs' at the
    same steps for a window or longer, starting in the first ``lag_early_fraction`` of the run,
    and came back below it by the end: early instability whose rises are too noisy to stand
    out against the run's own noise, seen against lr*.
    """
    steps, logs = _log_loss(run)
    if steps is None or not best_runs:
        return []
    size = signal.window(len(steps), config.lag_window_fraction, minimum=5)
    own = signal.smooth(logs, size)
    references = []
    for other in best_runs:
        other_steps, other_logs = _log_loss(other, until=int(steps[-1]))
        if other_steps is None:
            return []
        smoothed = signal.smooth(other_logs, signal.window(len(other_steps), config.lag_window_fraction, minimum=5))
        references.append(np.interp(steps, other_steps, smoothed))
    gap = own - np.median(references, axis=0)
    threshold = np.log10(config.lag_factor)
    if gap[-size:].max() >= threshold:
        return []  # never caught up: the detector and divergence speak of runs that stay bad
    early_until = steps[0] + config.lag_early_fraction * (steps[-1] - steps[0])
    return [
        ([int(steps[start]), int(steps[end])], float(10 ** gap[start:end + 1].max()))
        for start, end in signal.segments(gap >= threshold)
        if end - start + 1 >= size and steps[start] <= early_until
    ]


def _log_loss(run: Run, until: int | None = None):
    updates = run.updates()
    if until is not None:
        updates = updates[updates["step"] <= until]
    loss = updates["loss"].to_numpy(dtype=float)
    keep = np.isfinite(loss) & (loss > 0)
    if keep.sum() < 10:
        return None, None
    return updates["step"].to_numpy()[keep], np.log10(loss[keep])


def _valid_events(run: Run, config: Config) -> list[InstabilityEvent]:
    evals = run.valid_evals()
    if len(evals) < config.min_eval_points:
        return []
    evals = evals.drop_duplicates("step", keep="last")
    return find_instability(evals["step"].to_numpy(), evals["loss"].to_numpy(dtype=float))


def _together(valid: InstabilityEvent, train: InstabilityEvent) -> bool:
    """The validation loss began to rise while the training loss did (within one period's length)."""
    length = train.end_step - train.start_step + 1
    return train.start_step - length <= valid.start_step <= train.end_step + length


def _overlaps(event: InstabilityEvent, period: list[int]) -> bool:
    length = period[1] - period[0] + 1
    return event.start_step <= period[1] + length and event.end_step >= period[0] - length


def _merge(periods: list[list[int]]) -> list[list[int]]:
    merged: list[list[int]] = []
    for start, end in sorted(periods):
        if merged and start <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


CHECK = Check(
    id="short_run_instability",
    scope=Scope.STUDY,
    detect=detect,
    config=Config(),
    module=sys.modules[__name__],
    applies=applies,
)
