"""The validation loss rises while the training loss keeps falling: the train/valid gap widens.

Detects:
A run with at least ``min_evals`` (5) validation evaluations whose
validation loss, after its best point (the onset), ends at least
``min_rise`` (10%) and ``z`` (4) noise sigmas above that best, while the
training loss over the same steps fell; the gap curve valid - train (from
``train`` evals where logged, else the training loss around each eval
step) is the evidence, with the onset step.

Why:
Smith, "A disciplined approach to neural network hyper-parameters" (seed
001): "the test/validation loss is a good indicator of the network's
convergence"; plot the generalization error (valid_loss - train_loss) to
tell whether the architecture overfits; "achieving the horizontal part of
the test loss is the goal of hyperparameter tuning", and the amount of
regularization must be balanced per dataset and architecture. Steps after
the onset make the model worse on held-out data: they cost compute and,
without checkpoint selection, the result.

Algorithm:
The validation losses are smoothed by a centered rolling median over 3
evals (one eval is never the onset). Onset = the step of the smallest
smoothed validation loss. Overfitting when (a) the last smoothed value is
above the best by ``min_rise`` (10%, a change a user would act on) and by
``z`` (4) times the eval-to-eval noise (median absolute difference of
consecutive evals x 1.4826/sqrt(2)), (b) at least 2 evals come after the
onset, and (c) the training loss fell from the onset to the end (train
evals, else the median training loss over the steps between evals). A
validation loss that rises while the training loss rises too is
instability, not overfitting, and is left to the instability checks.
Severity: warning.

Example:
A 256-wide MLP classifier trained with Adam on 100 samples with 20% noisy
labels, evaluated every 25 steps: valid loss 2.5 at step 24 (onset), 5.25
at step 1499, train loss 0.23 -> 1.4e-5 over those steps: one warning,
onset_step 24, the gap from 1.65 to 5.26; recommend max_steps 24 and a
weight decay grid 1e-5, 1e-4, 1e-3.

Recommends:
``regularization``: stop at the onset (``max_steps`` = the onset step, the
best checkpoint), and tune weight decay on a grid (Smith: a complex
dataset needs less, a shallow net more: 1e-5, 1e-4, 1e-3 around any
current value), or more data / augmentation.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import bottleneck as bn  # bn.median: np.median's numbers without its per-call overhead
import numpy as np

from .. import rolling
from ..findings import Finding, Recommendation, Severity
from ..model import Run
from ..signal import MAD_TO_SIGMA
from .registry import Check, Scope


@dataclass(frozen=True)
class Config:
    min_evals: int = 5
    min_rise: float = 0.1
    z: float = 4.0


def applies(run: Run) -> str | None:
    valid = run.valid_evals()
    if not len(valid) or np.count_nonzero(np.isfinite(run.column(valid, "loss", float))) < Config.min_evals:
        return f"fewer than {Config.min_evals} validation evals"
    return None


def detect(run: Run, config: Config) -> list[Finding]:
    # numpy, not DataFrame masks: a small run's whole check costs less than a few of those
    valid = run.valid_evals()
    loss = run.column(valid, "loss", float)
    rows = np.isfinite(loss)
    if not rows.any():
        return []
    # One held-out split (the most evaluated), never an average of valid and test.
    splits = run.column(valid, "split")
    first = splits[rows][0]
    if (splits[rows] == first).all():
        split = str(first)
    else:
        split = str(valid["split"][rows].value_counts().index[0])
        rows &= splits == split
    steps, loss = run.column(valid, "step")[rows], loss[rows]
    if not (steps[1:] > steps[:-1]).all():  # else one eval per step (evals come sorted by step): its own mean
        valid = valid[rows].groupby("step", as_index=False)["loss"].mean()
        steps, loss = valid["step"].to_numpy(), valid["loss"].to_numpy(dtype=float)
    if len(loss) < config.min_evals:
        return []
    smooth = rolling.median(loss, 3, center=True, min_periods=1)
    best = int(smooth.argmin())
    if len(steps) - 1 - best < 2:
        return []
    noise = MAD_TO_SIGMA * float(bn.median(np.abs(np.diff(loss)))) / math.sqrt(2)
    rise = smooth[-1] - smooth[best]
    if rise <= config.min_rise * abs(smooth[best]) or rise <= config.z * noise:
        return []
    train = _train_at(run, steps)
    if train is None or not np.isfinite(train[[best, -1]]).all() or train[-1] >= train[best]:
        return []

    gap = loss - train
    onset = int(steps[best])
    gap_start, gap_end = float(gap[best]), float(gap[-1])
    return [
        Finding(
            check="overfitting",
            severity=Severity.WARNING,
            study=run.study,
            runs=(run.name,),
            steps=(onset, int(steps[-1])),
            title=(
                f"{run.name}: overfitting from step {onset}: {split} loss up {smooth[-1] / smooth[best]:.3g}x "
                f"while the training loss fell {train[best] / train[-1]:.3g}x"
            ),
            detail=(
                f"The {split} loss was best at step {onset} ({smooth[best]:.4g}) and ends at {smooth[-1]:.4g} "
                f"(eval-to-eval noise {noise:.2g}); the training loss went {train[best]:.4g} -> {train[-1]:.4g} "
                f"over the same steps. The gap {split} - train widened from {gap_start:.4g} to {gap_end:.4g}."
            ),
            evidence={
                "onset_step": onset,
                "split": split,
                "gap_start": gap_start,
                "gap_end": gap_end,
                "gap": [[int(s), float(g)] for s, g in zip(steps[:500], gap[:500]) if np.isfinite(g)],
                "best_valid_loss": float(smooth[best]),
                "final_valid_loss": float(smooth[-1]),
            },
            recommendation=_recommend(run, onset),
        )
    ]


def _train_at(run: Run, steps: np.ndarray) -> np.ndarray | None:
    """The training loss at each eval step: train evals where logged, else the median training loss since the last eval."""
    train = run.train_evals()
    if len(train) >= 2:
        by_step = train.groupby("step")["loss"].mean()
        values = by_step.reindex(steps).to_numpy(dtype=float)
        if np.isfinite(values).sum() >= 2:
            return _interpolate(values)
    updates = run.updates()
    if updates.empty:
        return None
    train_steps = run.column(updates, "step")
    train_loss = run.column(updates, "loss", float)
    # the training steps after the previous eval, up to this one (steps are sorted)
    edges = np.searchsorted(train_steps, np.concatenate(([-1], steps)), side="right")
    values = np.full(len(steps), np.nan)
    for i in range(len(steps)):
        span = train_loss[edges[i] : edges[i + 1]]
        span = span[np.isfinite(span)]
        if span.size:
            values[i] = np.median(span)
    if np.isfinite(values).sum() < 2:
        return None
    return _interpolate(values)


def _interpolate(values: np.ndarray) -> np.ndarray:
    """NaN filled linearly from the values around it, at the ends with the nearest one (pandas' interpolate, both directions)."""
    missing = np.isnan(values)
    index = np.arange(len(values))
    filled = values.copy()
    filled[missing] = np.interp(index[missing], index[~missing], values[~missing])
    return filled


def _recommend(run: Run, onset: int) -> Recommendation:
    decay = run.config.get("weight_decay")
    if isinstance(decay, (int, float)) and not isinstance(decay, bool) and decay > 0:
        grid = [decay * 3, decay * 10, decay * 30]
    else:
        grid = [1e-5, 1e-4, 1e-3]
    return Recommendation(
        action="regularization",
        values={"max_steps": onset, "weight_decay_grid": grid},
        why=(
            f"the validation loss was best at step {onset}: keep that checkpoint (stop there), and balance "
            "regularization (Smith 2018: tune weight decay on a grid, e.g. "
            + ", ".join(f"{g:g}" for g in grid)
            + "; more data or augmentation also help)"
        ),
    )


CHECK = Check(
    id="overfitting",
    scope=Scope.RUN,
    detect=detect,
    config=Config(),
    module=sys.modules[__name__],
    applies=applies,
)
