"""Sudden instability in the middle of training: the loss jumps up, with or without recovery.

Detects:
Periods after the first ``early_fraction`` (10%) of a run where the
training loss rises above the best level it had reached by more than the
run's own minibatch noise allows (``diagnose.instability``): a sudden jump
after a steady decline, each with its size, whether and when it came back,
and, when grad norms are logged, the grad norm that came with it. All the
spikes of one run make one finding (each spike is one period in it, however
many steps it lasts). Non-finite losses and the climb into a divergence are
left to ``divergence``; ``short`` runs to ``short_run_instability``.

Why:
Tuning Playbook, "Identifying unstable workloads" (seed 002): "sudden
instability in the middle of training" is the second kind of instability,
and "outlier values [of the gradient norm] can cause spurious instability
in the middle of training". Each spike costs the steps it takes to recover
(or the rest of the run); a run that spikes is usually one lr step away
from diverging, and fixing the instability typically improves training.

Algorithm:
The events of ``diagnose.instability`` (see ``early_instability``: the
smoothed log loss more than ``z`` (8) noise sigmas and ``min_ratio`` (5%)
above its best trailing level; a single high minibatch loss never counts)
that start after ``early_fraction`` of ``max_steps`` (and after the first 3
logged steps: those are early_instability's). Severity: warning; info
when the largest spike is under ``warning_ratio`` (1.5x); error when the
last spike never came back and rose at least ``error_ratio`` (10x): the
rest of the run was spent recovering. The grad
norm at the spike's start is compared with the median grad norm before it.

Example:
An MLP regressor, SGD + momentum 0.9 at lr 0.01, batch 32, with one batch
of targets scaled 5x at step 300 of 800: the loss jumps from 0.053 to 2.5
(48x) over steps 300-335 and is back at step 357: one warning, periods
{"run": [[300, 335]]}, recovered at step 357; the grad norm at step 300 is
48x its median; recommend clip threshold 0.98 (the 90th percentile over
steps 0-299). The same run clipping at 1.0 is quiet.

Recommends:
Gradient clipping (Playbook, "Gradient clipping": good for mid-training
instability) at the 90th percentile of the unclipped grad norms before the
first spike (``threshold``, the window it was computed over, how many of
those updates it would clip); if the run already clips below that, half its
threshold. Without grad norms: log them (``probe.step`` does) and, as the
last resort, half the lr.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from ..findings import Finding, Recommendation, Severity
from ..instability import InstabilityConfig, InstabilityEvent
from ..model import Run
from ..signal import median
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
    after = _events.early_until(run, config.early_fraction)
    detector = InstabilityConfig(z=config.z, min_ratio=config.min_ratio)
    spikes = [e for e in _events.events(run, detector) if e.start_step > after]
    if not spikes:
        return []
    worst = max(spikes, key=lambda e: e.ratio if e.ratio is not None else e.size_noise)
    last = spikes[-1]
    severity = Severity.WARNING if (worst.ratio is None or worst.ratio >= config.warning_ratio) else Severity.INFO
    if not last.recovered and (last.ratio or 0) >= config.error_ratio:
        severity = Severity.ERROR
    size = f"{worst.ratio:.3g}x" if worst.ratio is not None else f"{worst.size_noise:.3g} noise sigmas"
    count = f"{len(spikes)} loss spikes, the largest" if len(spikes) > 1 else "loss spiked"
    outcome = f"recovered by step {last.recovery_step}" if last.recovered else "did not recover"
    grad = _grad_at(run, spikes)
    detail = "; ".join(e.describe() for e in spikes[:10]) + (f"; and {len(spikes) - 10} more" if len(spikes) > 10 else "")
    if grad:
        detail += ". Grad norm at the start of each spike vs its median before: " + ", ".join(
            f"step {g['step']}: {g['ratio']:.3g}x" for g in grad[:10]
        )
    return [
        Finding(
            check="loss_spike",
            severity=severity,
            study=run.study,
            runs=(run.name,),
            steps=(spikes[0].start_step, last.end_step),
            title=f"{run.name}: {count} {size} at step {worst.peak_step} mid-training; {outcome}",
            detail=detail + ".",
            evidence={
                "periods": {run.name: [e.period for e in spikes]},
                "recovered": last.recovered,
                "recovery_step": last.recovery_step,
                "events": [e.to_dict() for e in spikes[:50]],
                "grad_norm_at_spikes": grad,
            },
            recommendation=_recommend(run, spikes),
        )
    ]


def _grad_at(run: Run, spikes: list[InstabilityEvent]) -> list[dict]:
    """The largest grad norm in the first few steps of each spike, relative to the median before it."""
    if not run.has("grad_norm"):
        return []
    updates = run.updates()
    steps = run.column(updates, "step")
    norms = run.column(updates, "grad_norm", float)
    found = []
    for spike in spikes:
        # slices, not masks over the whole run: the steps are sorted
        start = np.searchsorted(steps, spike.start_step)
        before = norms[:start]
        before = before[np.isfinite(before)]
        at = norms[start : np.searchsorted(steps, min(spike.end_step, spike.start_step + 3), side="right")]
        at = at[np.isfinite(at)]
        if before.size >= 10 and at.size:
            found.append({"step": spike.start_step, "grad_norm": float(at.max()), "ratio": float(at.max() / median(before))})
    return found


def _recommend(run: Run, spikes: list[InstabilityEvent]) -> Recommendation | None:
    return _events.clip_recommendation(run, spikes[0].start_step, "mid-training instability") or _events.halve_lr(
        run,
        "no grad norms were logged to choose a clipping threshold (log them: the Playbook's first fix is "
        "clipping at their 90th percentile); halving the lr is the last resort",
    )


CHECK = Check(
    id="loss_spike",
    scope=Scope.RUN,
    detect=detect,
    config=Config(),
    module=sys.modules[__name__],
    applies=_events.skip_roles,
)
