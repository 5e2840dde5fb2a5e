"""More than half of the updates were clipped: clipping has become a smaller learning rate.

Detects:
A run that clips its gradient norm (``clip_norm`` in the config or as a
column) where more than ``max_fraction`` (50%) of the applied updates had
an unclipped grad norm above the threshold (or, without grad norms, where
the ``clipped`` column says so).

Why:
Tuning Playbook, "Gradient clipping" (seed 002): "Extremely aggressive
gradient clipping (that is, >50% of the updates getting clipped), is, in
essence, a strange way of reducing the learning rate. If you find yourself
using extremely aggressive clipping, you probably should just cut the
learning rate instead." A clipped update is the gradient rescaled to the
threshold, so with most updates clipped the step size is set by the
threshold, not by lr x gradient: the lr that was tuned no longer means what
the sweep assumed, and the step no longer shrinks as the gradient does.

Algorithm:
Per applied update: clipped when ``grad_norm`` > the threshold (the
``clip_norm`` column where logged, else ``config.clip_norm``), else the
``clipped`` column. Updates with a non-finite norm are left out. The
fraction clipped over the run is compared with ``max_fraction`` (0.5, the
Playbook's number). The clipped updates were scaled by ``clip / grad_norm``;
the median of min(1, clip / grad_norm) over all updates is the lr factor
clipping applied in effect.

Example:
An MLP regressor, SGD + momentum at lr 0.03 with ``clip_norm`` 0.02 while
its median grad norm is 0.84: 600 of 600 updates clipped, median factor
0.024: one warning; lower the lr to 0.00072 and clip at the 90th
percentile of the grad norms (1.2) instead.

Recommends:
``lr`` with ``value`` = the run's lr times the median effective factor (the
step size clipping gave it, now from the lr), and ``clip_threshold`` = the
90th percentile of the unclipped grad norms, so that clipping only catches
outliers again. Without an lr: raise the threshold to that percentile.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from .. import signal
from ..findings import Finding, Recommendation, Severity, round_sig
from ..model import Run
from .registry import Check, Scope


@dataclass(frozen=True)
class Config:
    max_fraction: float = 0.5


def _config_clip(run: Run) -> float | None:
    value = run.config.get("clip_norm")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value) and value > 0:
        return float(value)
    return None


def applies(run: Run) -> str | None:
    if run.has("clipped"):
        return None
    if _config_clip(run) is None and not run.has("clip_norm"):
        return "no clipping threshold (config clip_norm or a clip_norm column)"
    if not run.has("grad_norm"):
        return "no grad_norm logged to compare with the clipping threshold"
    return None


def detect(run: Run, config: Config) -> list[Finding]:
    updates = run.updates()
    norms = run.column(updates, "grad_norm", float) if run.has("grad_norm") else None
    clip = _thresholds(run, updates)
    if norms is not None and clip is not None:
        usable = np.isfinite(norms) & np.isfinite(clip)
        norms, clip = norms[usable], clip[usable]
        clipped = norms > clip
    else:
        flags = run.column(updates, "clipped", float)
        clipped = flags[np.isfinite(flags)] > 0
        norms = None
    if clipped.size == 0:
        return []
    fraction = float(clipped.mean())
    if fraction <= config.max_fraction:
        return []

    evidence = {"clipped_fraction": fraction, "clipped_updates": int(clipped.sum()), "updates": int(clipped.size)}
    detail = f"{clipped.sum()} of {clipped.size} applied updates ({fraction:.0%}) were clipped"
    recommendation = None
    if norms is not None:
        factor = float(np.median(np.minimum(1.0, clip / norms)))
        percentile = float(signal.percentile(norms, 90))
        evidence.update(
            clip_norm=float(np.median(clip)),
            median_grad_norm=float(np.median(norms)),
            effective_lr_factor=factor,
            grad_norm_p90=percentile,
        )
        detail += (
            f": the threshold {np.median(clip):.3g} is below the median unclipped grad norm {np.median(norms):.3g}, "
            f"so the typical update was scaled by {factor:.3g}"
        )
        values = {"clip_threshold": round_sig(percentile)}
        if run.lr:
            values = {"value": round_sig(run.lr * factor), **values}
            why = (
                f"with {fraction:.0%} of the updates clipped, clipping acts as an lr cut of {factor:.2g}x (Tuning "
                f"Playbook: >50% clipped is 'a strange way of reducing the learning rate'); set lr "
                f"{run.lr:g} x {factor:.2g} = {round_sig(run.lr * factor):g} and clip at the 90th percentile of the "
                f"grad norms ({round_sig(percentile):g}) so that clipping only catches outliers"
            )
            recommendation = Recommendation(action="lr", values=values, why=why)
        else:
            recommendation = Recommendation(
                action="clip",
                values={"threshold": round_sig(percentile)},
                why="raise the threshold to the 90th percentile of the unclipped grad norms and lower the lr instead",
            )
    elif run.lr:
        recommendation = Recommendation(
            action="lr",
            values={"value": round_sig(run.lr / 2)},
            why="most updates were clipped: cut the lr (log grad_norm to size the cut) and clip only outliers",
        )
    return [
        Finding(
            check="clipping_too_aggressive",
            severity=Severity.WARNING,
            study=run.study,
            runs=(run.name,),
            steps=(int(run.column(updates, "step")[0]), int(run.column(updates, "step")[-1])),
            title=f"{run.name}: {fraction:.0%} of the updates were clipped: clipping is acting as a smaller lr",
            detail=detail + ".",
            evidence=evidence,
            recommendation=recommendation,
        )
    ]


def _thresholds(run: Run, updates) -> np.ndarray | None:
    """The clipping threshold of every applied update, or None when unknown."""
    fixed = _config_clip(run)
    if run.has("clip_norm"):
        column = run.column(updates, "clip_norm", float)
        return np.where(np.isfinite(column), column, fixed if fixed is not None else np.nan)
    if fixed is not None:
        return np.full(len(updates), fixed)
    return None


CHECK = Check(
    id="clipping_too_aggressive",
    scope=Scope.RUN,
    detect=detect,
    config=Config(),
    module=sys.modules[__name__],
    applies=applies,
)
