"""In an lr sweep, the learning rates just above the best one (lr*) show periods where the loss goes up instead of down.

Detects:
A study whose runs differ only in lr (and seed) is an lr sweep
(``diagnose.sweep``); lr* is the lr with the best result. For every lr above
lr* and less than ``max_ratio`` (10) times it, every seed's training loss is
searched for periods where it goes up instead of down, measured against that
run's own minibatch noise (``diagnose.instability``), and for divergence
(NaN/inf, or a loss that ended far above its start). One finding per study
lists every unstable lr, where (``evidence["periods"]``) and by how much.

Why:
Deep Learning Tuning Playbook (seed 002), "Identifying unstable workloads":
do a learning rate sweep and find lr*, plot training loss curves for learning
rates just above lr*; if they show loss instability (the loss goes up, not
down, during periods of training), fixing the instability typically improves
training, because instability is then what keeps the lr small.

Algorithm:
lr* and the sweep come from ``diagnose.sweep`` (validation loss at the best
checkpoint when every run has validation evals, else the smoothed training
loss at the end; seeds by their median; a diverged run scores worst). An lr
is unstable when any of its seeds diverged, has an instability event
(``diagnose.instability`` flags a period when the loss smoothed over 3, 9,
27, ... points rises above its best level so far by more than 8 noise
sigmas of that run and by more than 5%; batch-size-4 noise stays quiet), or
climbed: its loss ended 2x above the best level it reached, both medians
over 10% of the run (``diagnose.sweep.climb``: a steady climb whose
minibatch noise grows with it can hide inside every window's noise).
Only lrs in (lr*, ``max_ratio`` x lr*) are judged: the Playbook looks at the
rates just above lr*; an lr an order of magnitude or more above lr* is
unstable on every workload, and a sweep spaced by decades does not locate
the edge, so that says nothing about the fix. The early part of
a run is its first ``early_fraction`` (10%) of steps.

Example:
SGD with momentum 0.9 on a small MLP classifier, lrs 0.03, 0.1, 0.3 with 2
seeds, 300 steps: lr* = 0.1 (smoothed final loss 0.0037); at lr 0.3 seed 1's
loss climbs from its best level at step 164 to 5.3x that at the end: one
warning, periods {"lr0.3-s1": [[164, 299]]}, recommending clipping at the
90th percentile of that run's grad norms before step 164.

Recommends:
Instability that starts early (first 10% of the run) or reaches NaN: the
Playbook's warmup experiment (action ``warmup``): ``base_lr`` = 10x the
unstable lr, ``warmup_steps`` at 10, 100, 1000, ... up to 10% of max_steps,
``post_warmup_steps`` = 2 x warmup_steps, ``max_steps`` extended by the
warmup, a note when warmup is over 5% of max_steps. Instability that starts
mid-training in a run that logs ``grad_norm``: gradient clipping (action
``clip``) at the 90th percentile of that run's gradient norms before the
instability (Playbook, "Gradient clipping").
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from ..findings import Finding, Recommendation, Severity, round_sig
from ..instability import InstabilityEvent, run_instability
from ..model import Run, Study
from ..signal import percentile
from ..sweep import LrPoint, Sweep, climb, main_sweep, warmup_plan
from .registry import Check, Scope


@dataclass(frozen=True)
class Config:
    max_ratio: float = 10.0
    early_fraction: float = 0.1
    clip_percentile: float = 90.0


def applies(study: Study) -> str | None:
    return why_no_sweep(study)


def why_no_sweep(study: Study) -> str | None:
    """Why this study has no lr*, or None when it has one (shared with best_lr_at_edge)."""
    sweep = main_sweep(study)
    if sweep is None:
        return "no lr sweep (at least two lrs of runs that differ only in lr and seed)"
    if sweep.best is None:
        return "every lr of the sweep diverged: there is no lr*"
    return None


# A finding's text names a seed's first periods and its largest; a noisy run can have dozens, all of them
# in evidence["lrs"] and shaded in the report's figures.
DESCRIBED_PERIODS = 3


@dataclass(frozen=True)
class RunVerdict:
    """What one seed of an lr above lr* did: its instability events, a whole-run climb, divergence."""

    run: Run
    events: tuple[InstabilityEvent, ...]
    climb: tuple[int, int, float] | None
    diverged: bool

    @property
    def unstable(self) -> bool:
        return bool(self.events) or self.climb is not None or self.diverged

    @property
    def periods(self) -> list[list[int]]:
        if self.events:
            return [event.period for event in self.events]
        return [[self.climb[0], self.climb[1]]] if self.climb else []

    def describe(self) -> str:
        if self.events:
            shown = list(self.events[:DESCRIBED_PERIODS])
            worst = max(self.events, key=lambda event: event.size_noise)
            text = "; ".join(event.describe() for event in shown)
            if worst not in shown:
                del shown[-1]
                text = "; ".join(event.describe() for event in shown) + f"; the largest: {worst.describe()}"
                shown.append(worst)
            more = len(self.events) - len(shown)
            return text + (f"; and {more} more period{'s' if more != 1 else ''}" if more else "")
        if self.climb:
            return f"loss ended {self.climb[2]:.3g}x above its best level (steps {self.climb[0]}-{self.climb[1]})"
        return "diverged" if self.diverged else "stable"

    def to_dict(self) -> dict:
        return {
            "run": self.run.name,
            "diverged": self.diverged,
            "events": [event.to_dict() for event in self.events],
            "climb": {"from_step": self.climb[0], "to_step": self.climb[1], "ratio": self.climb[2]} if self.climb else None,
        }


def verdicts(point: LrPoint) -> list[RunVerdict]:
    """Each seed of ``point`` judged for instability."""
    return [
        RunVerdict(run=r.run, events=tuple(run_instability(r.run)), climb=climb(r.run), diverged=r.diverged)
        for r in point.results
    ]


def detect(study: Study, config: Config) -> list[Finding]:
    sweep = main_sweep(study)
    best = sweep.best
    judged = [(point, verdicts(point)) for point in sweep.just_above_best(config.max_ratio)]
    unstable = [(point, runs) for point, runs in judged if any(v.unstable for v in runs)]
    if not unstable:
        return []

    bad = [v for _, runs in unstable for v in runs if v.unstable]
    periods = {v.run.name: v.periods for v in bad if v.periods}
    spans = [period for runs in periods.values() for period in runs]
    steps = (min(p[0] for p in spans), max(p[1] for p in spans)) if spans else None
    first_point, first_runs = unstable[0]
    evidence = {
        "best_lr": best.lr,
        "metric": sweep.metric,
        "best_runs": [run.name for run in best.runs],
        "unstable_lr": first_point.lr,
        "periods": periods,
        "lrs": [
            {"lr": point.lr, "ratio_to_best": point.lr / best.lr, "runs": [v.to_dict() for v in runs]}
            for point, runs in unstable
        ],
        "max_ratio": config.max_ratio,
    }
    if len(unstable) == 1:
        title = f"lr {first_point.lr:g} ({first_point.lr / best.lr:.3g}x lr* {best.lr:g}) is unstable: {_headline(first_runs)}"
    else:
        title = f"{len(unstable)} lrs above lr* {best.lr:g} are unstable: " + "; ".join(
            f"{point.lr:g} ({_headline(runs)})" for point, runs in unstable
        )
    judged_lrs = ", ".join(f"{point.lr:g}" for point, _ in judged)
    detail = (
        f"lr* = {best.lr:g} (best {_metric_name(sweep)} {best.score:.4g}, median of {len(best.results)} "
        f"seed{'s' if len(best.results) != 1 else ''}). Of the lrs above it and below {config.max_ratio:g}x "
        f"({judged_lrs}), these show the loss going up instead of down relative to each run's own noise. "
        + " ".join(f"{v.run.name} (lr {point.lr:g}): {v.describe()}." for point, runs in unstable for v in runs)
        + " Fixing the instability typically lets a larger lr train better (Tuning Playbook)."
    )
    return [
        Finding(
            check="unstable_above_best_lr",
            severity=Severity.WARNING,
            study=study.name,
            runs=tuple(v.run.name for v in bad),
            steps=steps,
            title=title,
            detail=detail,
            evidence=evidence,
            recommendation=_recommend(sweep, first_point, first_runs, config),
        )
    ]


def max_steps_of(runs: list[Run]) -> int | None:
    """``config.max_steps`` of the runs, else the longest run's logged length."""
    declared = [run.max_steps for run in runs if run.max_steps]
    if declared:
        return max(declared)
    logged = [run.last_step + 1 for run in runs if run.last_step is not None]
    return max(logged) if logged else None


def warmup_recommendation(unstable_lr: float, best_runs: list[Run], why: str) -> Recommendation:
    """The Playbook's warmup experiment as a recommendation (shared with best_lr_at_edge, short_run_instability)."""
    max_steps = max_steps_of(best_runs)
    plan = warmup_plan(unstable_lr, max_steps)
    steps_text = ", ".join(str(w) for w in plan["warmup_steps"])
    notes = [e["note"] for e in plan["experiments"] if "note" in e]
    text = (
        f"{why}: ramp the lr from 0 to base_lr {plan['base_lr']:g} (10x the unstable lr {unstable_lr:g}) over "
        f"warmup_steps in [{steps_text}], hold it for post_warmup_steps = 2 x warmup_steps, and extend max_steps "
        f"by the warmup"
        + (f" ({max_steps} -> {', '.join(str(m) for m in plan['max_steps'])})" if plan["max_steps"] else "")
        + "; keep the shortest warmup that does not blow up (Tuning Playbook, learning rate warmup)"
        + (f". Note: {notes[0]}" if notes else "")
    )
    return Recommendation(action="warmup", why=text, values={k: v for k, v in plan.items()})


def _recommend(sweep: Sweep, point: LrPoint, runs: list[RunVerdict], config: Config) -> Recommendation:
    # the first period of any seed (of two seeds starting at one step, the first seed's)
    first = min(((period[0], v) for v in runs for period in v.periods), key=lambda pair: pair[0], default=None)
    nonfinite = any(v.diverged or any(e.nonfinite for e in v.events) for v in runs)
    if first is not None and not nonfinite:
        start, verdict = first
        run = verdict.run
        span = run.max_steps or (run.last_step or 0) + 1
        if start > config.early_fraction * span and run.has("grad_norm"):
            updates = run.updates()
            norms = run.column(updates, "grad_norm", float)[run.column(updates, "step") < start]
            norms = norms[np.isfinite(norms)]
            if norms.size >= 10:
                threshold = round_sig(float(percentile(norms, config.clip_percentile)))
                return Recommendation(
                    action="clip",
                    values={"threshold": threshold, "percentile": config.clip_percentile, "lr": point.lr,
                            "clipped_fraction": round_sig(float(np.mean(norms > threshold)))},
                    why=(
                        f"the instability at lr {point.lr:g} starts mid-training (step {start} of {span}): clip the "
                        f"global gradient norm at {threshold:g}, the {config.clip_percentile:g}th percentile of "
                        f"{run.name}'s norms before step {start} (Tuning Playbook, gradient clipping)"
                    ),
                )
    return warmup_recommendation(point.lr, sweep.best.runs, f"lr {point.lr:g} is unstable just above lr* {sweep.best_lr:g}")


def _headline(runs: list[RunVerdict]) -> str:
    """The worst thing any seed of one lr did, in a few words."""
    events = [e for v in runs for e in v.events]
    if any(e.nonfinite for e in events):
        first = min(e.start_step for e in events if e.nonfinite)
        return f"NaN/inf from step {first}"
    if events:
        worst = max(events, key=lambda e: e.size_noise)
        ratio = f"{worst.ratio:.3g}x, " if worst.ratio is not None else ""
        return f"loss up at steps {worst.start_step}-{worst.end_step} ({ratio}{worst.size_noise:.3g} noise sigmas)"
    climbs = [v.climb for v in runs if v.climb]
    if climbs:
        worst = max(climbs, key=lambda c: c[2])
        return f"loss climbs {worst[2]:.3g}x above its best from step {worst[0]}"
    return "diverged"


def _metric_name(sweep: Sweep) -> str:
    return "validation loss" if sweep.metric == "valid_loss" else "smoothed final training loss"


CHECK = Check(
    id="unstable_above_best_lr",
    scope=Scope.STUDY,
    detect=detect,
    config=Config(),
    module=sys.modules[__name__],
    applies=applies,
)
