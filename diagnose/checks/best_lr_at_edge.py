"""The best learning rate of a sweep sits at an edge: of instability, or of the lrs that were tried.

Detects:
``instability``: the next lr of the sweep above lr* (less than
``max_ratio`` = 10x higher) is unstable, so lr* is the largest stable lr
(or lr* itself already shows instability) and instability is what limits
the learning rate. ``sweep_top`` /
``sweep_bottom``: lr* is the largest (or smallest) lr tried, so the sweep
did not bracket the best lr.

Why:
Deep Learning Tuning Playbook (seed 002), "When to apply learning rate
warmup": a hyperparameter-axis plot whose best learning rate is right at the
edge of instability (its Figure 7a) indicates optimization instability;
warmup can make much larger learning rates trainable. "Instability is only
an issue when it forces you to use a learning rate that's too small."
A best lr at the end of the tried range is an unfinished sweep: the
optimum may lie beyond it.

Algorithm:
The sweep, lr* and each lr's stability come from ``diagnose.sweep`` (an lr
is stable when none of its seeds diverged and none has a period where the
loss goes up instead of down by more than 8 of its own noise sigmas and 5%,
``diagnose.instability``). ``instability`` needs the next lr above lr*
unstable and less than ``max_ratio`` above it (lr* itself may show a
recovered period: that only says how close to the edge it is): a sweep whose next
lr is a decade higher does not locate the edge (every workload diverges an
order of magnitude above its best lr). The sweep-range kinds need at least ``min_lrs`` (3) lrs
(with two lrs, lr* is always at one end and says nothing), lr* better
than its neighbour by more than ``min_gap`` (2%: tied scores do not say
which end is best) and, for ``sweep_top``, lr* stable.

Example:
lrs 0.03, 0.1, 0.3 with 2 seeds each, 300 steps: lr* = 0.1; at 0.3 a seed's
loss ends 5.3x above its best: lr* is at the edge of instability. Warmup
experiment: base_lr 3, warmup_steps [10, 30], post_warmup_steps [20, 60],
max_steps [310, 330], with a note on 30 (10% of max_steps, over 5%).

Recommends:
``instability``: the Playbook's warmup experiment (action ``warmup``):
base_lr = 10x the unstable lr, warmup_steps at orders of magnitude (10,
100, 1000, ...) with the largest at most 10% of max_steps, post_warmup_steps
= 2 x warmup_steps, max_steps extended by warmup_steps, and a note when
warmup would exceed 5% of max_steps. ``sweep_top`` / ``sweep_bottom``:
extend the sweep (action ``lr``) to 3x and 10x above (or below) lr*.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from ..findings import Finding, Recommendation, Severity, round_sig
from ..model import Study
from ..sweep import main_sweep, stable
from .registry import Check, Scope
from .unstable_above_best_lr import warmup_recommendation, why_no_sweep


@dataclass(frozen=True)
class Config:
    max_ratio: float = 10.0
    min_lrs: int = 3
    min_gap: float = 0.02


def applies(study: Study) -> str | None:
    return why_no_sweep(study)


def detect(study: Study, config: Config) -> list[Finding]:
    sweep = main_sweep(study)
    best = sweep.best
    index = sweep.points.index(best)
    best_stable = stable(best)
    above = sweep.points[index + 1] if index + 1 < len(sweep.points) else None
    evidence = {
        "best_lr": best.lr,
        "metric": sweep.metric,
        "lrs": sweep.lrs,
        "best_runs": [run.name for run in best.runs],
    }
    near = sweep.just_above_best(config.max_ratio)
    if above is not None and near and near[0] is above and not stable(above):
        own = "" if best_stable else (
            " lr* itself shows a period where its loss goes up, a sign of how close to the edge it is."
        )
        return [
            Finding(
                check="best_lr_at_edge",
                severity=Severity.WARNING,
                study=study.name,
                runs=tuple(run.name for run in best.runs + above.runs),
                title=f"lr* {best.lr:g} is at the edge of instability: instability at {above.lr:g} limits the learning rate",
                detail=(
                    f"lr* = {best.lr:g} is the best of {len(sweep.points)} lrs, but the next lr, "
                    f"{above.lr:g} ({above.lr / best.lr:.3g}x), "
                    + ("diverged" if above.diverged else "shows periods where the loss goes up instead of down")
                    + ". The best lr sits right at the edge of instability, so instability, not the lr's quality, "
                    "is what limits it (Tuning Playbook, Figure 7a)." + own
                ),
                evidence={**evidence, "kind": "instability", "best_stable": best_stable, "unstable_lr": above.lr,
                          "unstable_runs": [run.name for run in above.runs]},
                recommendation=warmup_recommendation(
                    above.lr, best.runs, f"lr* {best.lr:g} is at the edge of instability ({above.lr:g} is unstable)"
                ),
            )
        ]
    if len(sweep.points) < config.min_lrs:
        return []
    # lr* must beat its neighbour clearly: with ties the sweep does not say where the best lr lies.
    if above is None and best_stable and _clearly_better(best, sweep.points[index - 1], config):
        return [_range_finding(study, sweep, evidence, "sweep_top")]
    if index == 0 and _clearly_better(best, sweep.points[1], config):
        return [_range_finding(study, sweep, evidence, "sweep_bottom")]
    return []


def _clearly_better(best, neighbour, config: Config) -> bool:
    return neighbour.score > best.score + config.min_gap * abs(best.score)


def _range_finding(study: Study, sweep, evidence: dict, kind: str) -> Finding:
    best = sweep.best
    top = kind == "sweep_top"
    factors = (3, 10) if top else (1 / 3, 1 / 10)
    tries = [round_sig(best.lr * f) for f in factors]
    where = "largest" if top else "smallest"
    return Finding(
        check="best_lr_at_edge",
        severity=Severity.WARNING,
        study=study.name,
        runs=tuple(run.name for run in best.runs),
        title=f"lr* {best.lr:g} is the {where} lr tried: the sweep does not bracket the best lr",
        detail=(
            f"Of the lrs {', '.join(f'{lr:g}' for lr in sweep.lrs)}, the {where} one scored best "
            f"({best.score:.4g}); a better lr may lie {'above' if top else 'below'} the range"
            + (" (it was stable, so instability is not what stops it)" if top else "")
            + "."
        ),
        evidence={**evidence, "kind": kind},
        recommendation=Recommendation(
            action="lr",
            values={"value": tries[0], "try": tries},
            why=f"extend the sweep {'up' if top else 'down'} to {tries[0]:g} and {tries[1]:g} to find where the "
            "result turns",
        ),
    )


CHECK = Check(
    id="best_lr_at_edge",
    scope=Scope.STUDY,
    detect=detect,
    config=Config(),
    module=sys.modules[__name__],
    applies=applies,
)
