"""The loss or gradient norm became NaN/inf, or the loss exploded by orders of magnitude and stayed there.

Detects:
A run whose training loss (or unclipped gradient norm) became NaN or
infinite on an applied update, or whose smoothed loss rose to at least
10x its starting value and 100x the best value reached before, and ended
there. A run whose ``run.json`` says ``diverged`` is reported too.

Why:
Any workload diverges when the learning rate is too large (Deep Learning
Tuning Playbook, "Identifying unstable workloads"). A diverged run wastes the
rest of its compute; a sweep that hides one misleads lr* selection.

Algorithm:
Steps that an AMP GradScaler skipped (``skipped`` = 1) are left out: the
scaler found inf/nan gradients and did not apply them, which is its normal
work, not divergence. A non-finite loss or grad norm on an applied update is
an error, unless the loss is finite again over the last 10% of the run, which
is a warning (transient). Explosion: the loss is smoothed by a centered
rolling median over 1% of the points (at least 3), in log space; it has
exploded where the smoothed loss exceeds ``start_factor`` (10) times the
median of the first 2% of points and ``best_factor`` (100) times the best
smoothed value before it, and it is divergence when the last smoothed value
is still above ``start_factor`` times the start (a rise that comes back is a
loss spike, not divergence). Only positive losses are tested for explosion.
The divergence step reported is where the climb began: the start of the
``diagnose.instability`` period that holds the first non-finite value (or
the explosion), so a loss that rises for 20 steps and then turns inf is
reported where it started rising; the first non-finite step is kept in
the evidence.

Example:
SGD at lr 3.0 on a small MLP: loss 2.3 at step 0, 0.9 at step 40, rising
from step 45, 1e4 at step 60 and inf from step 63 on: one error, steps
[45, 199], first_nonfinite_step 63.

Recommends:
Divergence in the first 10% of the run: warmup (Playbook "Learning rate
warmup"), ``warmup_steps`` the smallest of 10, 100, 1000, ... at least twice
the divergence step and at most 10% of the run, ``base_lr`` the run's lr.
Later, with grad norms logged: clipping at the 90th percentile of the grad
norms before divergence. Otherwise: a 3x lower lr (the last resort).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import bottleneck as bn  # bn.median: np.median's numbers without its per-call overhead
import numpy as np

from .. import signal
from ..findings import Finding, Recommendation, Severity, round_sig
from ..instability import run_instability
from ..model import Run
from .registry import Check, Scope


@dataclass(frozen=True)
class Config:
    start_factor: float = 10.0
    best_factor: float = 100.0
    recovered_fraction: float = 0.1
    early_fraction: float = 0.1


def detect(run: Run, config: Config) -> list[Finding]:
    # early_instability and loss_spike ask too: found once per run and config
    found = run.__dict__.setdefault("_divergence", {})
    if config not in found:
        found[config] = _detect(run, config)
    return list(found[config])


def _detect(run: Run, config: Config) -> list[Finding]:
    updates = run.updates()
    if not len(updates) or not len(updates.columns):  # updates.empty, without its generator (~2 us a call)
        return _from_status(run) if run.status == "diverged" else []
    steps = run.column(updates, "step")
    loss = run.column(updates, "loss", float)

    bad = bad_loss = run.nonfinite("loss", steps, loss)
    if run.has("grad_norm"):
        bad = bad | run.nonfinite("grad_norm", steps, run.column(updates, "grad_norm", float))
    if bad is not False and bad.any():  # (False: nothing non-finite, most runs; np.any's wrapper costs ~5 us)
        return [_nonfinite_finding(run, steps, loss, bad, config)]

    exploded = _explosion(run, steps, loss, config, finite=bad_loss is False)
    if exploded:
        return [exploded]
    return _from_status(run) if run.status == "diverged" else []


def _onset(run: Run, step: int) -> int:
    """Where the loss began to climb into ``step``: the start of the instability period holding it, else ``step``."""
    for event in run_instability(run):
        if event.start_step <= step <= event.end_step:
            return min(event.start_step, step)
    return step


def _nonfinite_finding(run: Run, steps, loss, bad, config: Config) -> Finding:
    first_bad = int(steps[np.argmax(bad)])
    first = _onset(run, first_bad)
    rose = f"the loss rose from step {first} and " if first < first_bad else ""
    tail = max(1, int(len(steps) * config.recovered_fraction))
    recovered = not bad[-tail:].any() and np.isfinite(loss[-tail:]).all()
    count = int(bad.sum())
    finite_before = loss[:np.argmax(bad)]
    finite_before = finite_before[np.isfinite(finite_before)]
    evidence = {
        "divergence_step": first,
        "first_nonfinite_step": first_bad,
        "nonfinite_steps": count,
        "last_finite_loss": float(finite_before[-1]) if finite_before.size else None,
        "recovered": recovered,
    }
    if recovered:
        return Finding(
            check="divergence",
            severity=Severity.WARNING,
            study=run.study,
            runs=(run.name,),
            steps=(first_bad, int(steps[np.flatnonzero(bad)[-1]])),
            title=f"{run.name}: loss or grad norm non-finite on {count} updates from step {first_bad}, then recovered",
            detail=(
                f"{count} applied updates had a NaN/inf loss or gradient norm, the first at step {first_bad}; "
                f"the last {tail} logged steps are finite again. If a GradScaler skipped these steps, log "
                "`skipped` so they are not counted."
            ),
            evidence=evidence,
            recommendation=_recommend(run, first, steps, config),
        )
    return Finding(
        check="divergence",
        severity=Severity.ERROR,
        study=run.study,
        runs=(run.name,),
        steps=(first, int(steps[-1])),
        title=f"{run.name}: diverged at step {first} ({rose}loss or grad norm became NaN/inf at step {first_bad})",
        detail=(
            (f"The smoothed loss climbed above its noise from step {first}. " if first < first_bad else "")
            + f"From step {first_bad} on, {count} of {len(steps)} logged updates have a non-finite loss or "
            f"gradient norm"
            + (f"; the last finite loss was {finite_before[-1]:.4g}." if finite_before.size else ".")
        ),
        evidence=evidence,
        recommendation=_recommend(run, first, steps, config),
    )


def _explosion(run: Run, steps, loss, config: Config, finite: bool) -> Finding | None:
    """The loss exploded and stayed there; ``finite``: every loss is known to be finite."""
    if len(loss) < 3:
        return None
    keep = None if finite else np.isfinite(loss)
    if keep is not None and not keep.all():
        steps, loss = steps[keep], loss[keep]
    if not loss.size or loss.min() <= 0:
        return None  # ratios (log space) need positive losses
    size = signal.window(len(loss), 0.01)
    start = float(bn.median(np.log10(loss[: max(1, int(len(loss) * 0.02))])))
    # A run that ends below 10x its start did not diverge: its last smoothed value (the centered window
    # of the last point holds only the last size // 2 + 1 points) decides before the whole run is taken
    # to log space (log10 is most of the cost on a long run) and smoothed. That median is at most the
    # largest of those points, which most runs' largest already shows.
    if np.log10(loss[-(size // 2 + 1):].max()) <= start + np.log10(config.start_factor):
        return None
    if signal.smooth(np.log10(loss[-size:]), size)[-1] <= start + np.log10(config.start_factor):
        return None
    level = signal.smooth(np.log10(loss), size)
    best_before = np.minimum.accumulate(level)
    above = (level > start + np.log10(config.start_factor)) & (
        level > best_before + np.log10(config.best_factor)
    )
    if not above.any() or level[-1] <= start + np.log10(config.start_factor):
        return None
    first_index = int(np.argmax(above))
    first = _onset(run, int(steps[first_index]))
    peak = float(10 ** level.max())
    best = float(10 ** best_before[first_index])
    start_loss = float(10**start)
    return Finding(
        check="divergence",
        severity=Severity.ERROR,
        study=run.study,
        runs=(run.name,),
        steps=(first, int(steps[-1])),
        title=f"{run.name}: loss exploded at step {first} ({peak / best:.3g}x its best) and did not come back",
        detail=(
            f"The smoothed loss started at {start_loss:.4g}, reached {best:.4g}, rose above "
            f"{config.best_factor:g}x that from step {first} to a peak of {peak:.4g}, and ends at "
            f"{10 ** level[-1]:.4g} ({10 ** level[-1] / start_loss:.3g}x its start)."
        ),
        evidence={
            "start_loss": start_loss,
            "best_loss": best,
            "peak_loss": peak,
            "final_loss": float(10 ** level[-1]),
            "explosion_step": first,
            "divergence_step": first,
        },
        recommendation=_recommend(run, first, steps, config),
    )


def _from_status(run: Run) -> list[Finding]:
    return [
        Finding(
            check="divergence",
            severity=Severity.ERROR,
            study=run.study,
            runs=(run.name,),
            title=f"{run.name}: the run was stopped as diverged",
            detail="run.json says status \"diverged\"; the logged steps do not show a NaN/inf or an explosion "
            "(the run was probably stopped before the loss was written).",
        )
    ]


def _recommend(run: Run, first: int, steps, config: Config) -> Recommendation:
    span = run.max_steps or int(steps[-1]) + 1
    if first <= config.early_fraction * span:
        warmup = next(
            (w for w in (10, 100, 1_000, 10_000, 100_000) if w >= 2 * max(first, 1) and w <= 0.1 * span),
            None,
        )
        if warmup is not None:
            return Recommendation(
                action="warmup",
                values={"warmup_steps": warmup, "base_lr": run.lr},
                why=(
                    f"the run diverged early (step {first} of {span}): ramp the lr up from 0 over "
                    f"{warmup} steps to the same base lr (Tuning Playbook, learning rate warmup)"
                ),
            )
    if run.has("grad_norm"):
        updates = run.updates()
        before = run.column(updates, "grad_norm", float)[run.column(updates, "step") < first]
        before = before[np.isfinite(before)]
        if before.size >= 10:
            threshold = float(signal.percentile(before, 90))
            return Recommendation(
                action="clip",
                values={"threshold": round_sig(threshold)},
                why="clip the global gradient norm at the 90th percentile of the norms before divergence",
            )
    lower = round_sig(run.lr / 3) if run.lr else None
    return Recommendation(
        action="lr",
        values={"value": lower},
        why="lower the learning rate about 3x (the Tuning Playbook's last resort; try warmup or clipping first)",
    )


CHECK = Check(id="divergence", scope=Scope.RUN, detect=detect, config=Config(), module=sys.modules[__name__])
