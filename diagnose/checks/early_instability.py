"""The loss goes up instead of down early in training (at initialization or in the first tenth of the run).

Detects:
A period in the first ``early_fraction`` (10%) of a run where the training
loss rises above the best level it had reached, by more than the run's own
minibatch noise allows (``diagnose.instability``), with whether and when it
came back. Non-finite losses and the climb into a divergence are left to
``divergence``; ``short`` runs to ``short_run_instability``.

Why:
The Deep Learning Tuning Playbook ("Identifying unstable workloads", seed
002) tells two kinds of instability apart: "instability at initialization
or early in training" and sudden instability mid-training; early
instability is the one that learning rate warmup fixes. It also warns that
"some models show very early instability followed by a recovery that
results in slow but stable training", which a look at the final loss
misses: so a recovered early spike is reported too.

Algorithm:
``diagnose.instability`` on the applied updates' training loss, in log
space: the loss smoothed by centered rolling medians over 5, 15, 45, ...
points must exceed its best trailing level so far by more than ``z`` (8)
times the smoothed series' noise (measured from the run itself) and by
more than ``min_ratio`` (5%); batch-size-4 noise never does, a 2x rise of a
batch-256 loss does. An event is early when it starts within
``early_fraction`` (0.1) of ``max_steps`` (or of the logged steps), or
within the first 3 logged steps (a log written every 500 steps has nothing
earlier): the Playbook's "early in training", scale-free in run length. All early events
of a run make one finding. Severity: warning; info when the largest rise
is under ``warning_ratio`` (1.5x: a noise-free full-batch fit wobbles by
1.1-1.5x, many sigmas of its tiny noise, without costing anything); error
when the loss never came back and rose at least ``error_ratio`` (10x).

Example:
A width-1024 two-layer ReLU net, full-batch GD at lr 12 (above its initial
stability limit): the loss goes 0.98 -> 0.71 -> 10.6 over steps 6-17 and
is back at step 18 (the "catapult"), ending at 0.018: one warning, steps
[6, 17], 13x, recovered at step 18; recommend warmup_steps 30 (10% of the
300 steps) at base_lr 12. (In this net warmup only delays the catapult to
the end of the warmup: the corpus case catapult_lr12_warmup, a loss_spike.)

Recommends:
Learning rate warmup (Playbook, "Learning rate warmup"): ``warmup_steps``
the smallest of 10, 30, 100, 300, ... that is at least twice the end of the
unstable period (else at least its end) and at most 10% of the run,
``base_lr`` the run's lr (keep the lr, ramp up to it). If the loss then
spikes as the warmup ends, the lr itself is above the stable limit: clip
(the next fix of the Playbook) or lower it. When no such warmup fits and grad norms are logged:
clipping at the 90th percentile of the grad norms before the instability.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from ..findings import Finding, Recommendation, Severity
from ..instability import InstabilityConfig, InstabilityEvent
from ..model import Run
from . import _events
from .registry import Check, Scope


@dataclass(frozen=True)
class Config:
    early_fraction: float = 0.1
    error_ratio: float = 10.0
    warning_ratio: float = 1.5
    z: float = InstabilityConfig.z
    min_ratio: float = InstabilityConfig.min_ratio


def detect(run: Run, config: Config) -> list[Finding]:
    span = _events.span(run)
    until = _events.early_until(run, config.early_fraction)
    detector = InstabilityConfig(z=config.z, min_ratio=config.min_ratio)
    early = [e for e in _events.events(run, detector) if e.start_step <= until]
    if not early:
        return []
    worst = max(early, key=lambda e: e.ratio if e.ratio is not None else e.size_noise)
    last = early[-1]
    recovered = last.recovered
    severity = Severity.WARNING if (worst.ratio is None or worst.ratio >= config.warning_ratio) else Severity.INFO
    if not recovered and (last.ratio or 0) >= config.error_ratio:
        severity = Severity.ERROR
    size = f"{worst.ratio:.3g}x" if worst.ratio is not None else f"{worst.size_noise:.3g} noise sigmas"
    outcome = f"recovered by step {last.recovery_step}" if recovered else "never came back to its early best"
    return [
        Finding(
            check="early_instability",
            severity=severity,
            study=run.study,
            runs=(run.name,),
            steps=(early[0].start_step, last.end_step),
            title=(
                f"{run.name}: loss rose {size} early in training "
                f"(steps {early[0].start_step}-{last.end_step} of {span}) and {outcome}"
            ),
            detail=(
                "; ".join(e.describe() for e in early)
                + f". Early = the first {config.early_fraction:.0%} of the run (steps 0-{until}); sizes are in "
                "units of the run's own step-to-step noise."
            ),
            evidence={
                "periods": {run.name: [e.period for e in early]},
                "recovered": recovered,
                "recovery_step": last.recovery_step,
                "events": [e.to_dict() for e in early],
                "early_until_step": until,
            },
            recommendation=_recommend(run, early, span),
        )
    ]


def _recommend(run: Run, early: list[InstabilityEvent], span: int) -> Recommendation | None:
    end = early[-1].end_step
    warmup = _events.warmup_steps_for(end, span)
    if warmup is not None:
        return Recommendation(
            action="warmup",
            values={"warmup_steps": warmup, "base_lr": run.lr},
            why=(
                f"warmup is the Tuning Playbook's fix for early instability: ramp the lr from 0 to the same "
                f"base lr over {warmup} steps (2x past the unstable period, which ends at step {end}; "
                f"{warmup / span:.1%} of the run)"
            ),
        )
    return _events.clip_recommendation(run, early[0].start_step, "early instability") or _events.halve_lr(
        run, "no warmup short enough fits in this run and no grad norms were logged: halve the lr (the last resort)"
    )


CHECK = Check(
    id="early_instability",
    scope=Scope.RUN,
    detect=detect,
    config=Config(),
    module=sys.modules[__name__],
    applies=_events.skip_roles,
)
