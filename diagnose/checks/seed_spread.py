"""Seeds of one config disagree: the result depends on the seed (a swarm with some bees fitting and some not).

Detects:
In a study where several seeds (at least ``min_seeds``, 3) share a config
(the swarm of ``diagnose.sweep.swarm``: runs grouped by config, seed aside;
e.g. a momentum x lr grid), the configs whose seeds end far apart: the
worst seed's final loss is at least ``spread_factor`` (3x) the best seed's,
or some seeds diverged while others did not. It reports, per config, the
spread across seeds and how many seeds fit.

Why:
Aidan Morrison, "Learning Rate and Momentum" (seed 000): swarms of the same
width-10 ReLU net on sin "can either have fitted very well ... or have
barely reached into the peaks of the curve at all", and single bees "shake
themselves out of position" at low momentum. A config judged on one seed can
be ranked by luck; the spread across seeds is what tells a real difference
from noise, and how many seeds fit is what a user can rely on.

Algorithm:
A run's final loss is its smoothed training loss at the end (the median of
the last 5% of its logged points, at least 5), +inf when it diverged. A
seed fits when its final loss is within ``fit_factor`` (2x) of the best
final loss of the whole study: the best fit any seed reached on this model
and data sets the bar, so the test is scale-free. Seeds of one config
disagree when max/min of their final losses is at least ``spread_factor``
(3x: over 4-6 seeds of healthy configs the ratio stays under 2, e.g. 1.4x at
momentum 0.9 and lr 0.01; minibatch noise is already averaged out by the
smoothing), or when some but not all diverged. For losses that are not all
positive, the spread is (max - min) / |median| against spread_factor - 1.

Example:
Sin swarm, momentum {0.9, 0.95} x lr {0.002, 0.01}, 4 seeds: at lr 0.002
and momentum 0.9 the seeds end at 0.093-0.32 (3.4x), none fits; at lr 0.01
all 8 bees end within 0.0098-0.013 and fit: one warning naming the two
slow cells, recommending momentum 0.95 with lr 0.01.

Recommends:
The config whose seeds all fit with the lowest median final loss (action
``momentum`` when the grid varies momentum, with its lr, else ``lr``); none
when no config fits on every seed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from ..findings import Finding, Recommendation, Severity
from ..model import Study
from ..sweep import swarm
from .registry import Check, Scope


@dataclass(frozen=True)
class Config:
    min_seeds: int = 3
    spread_factor: float = 3.0
    fit_factor: float = 2.0


def applies(study: Study) -> str | None:
    if swarm(study) is None:
        return "no config with two or more seeds"
    return None


def detect(study: Study, config: Config) -> list[Finding]:
    view = swarm(study, fit_factor=config.fit_factor)
    if view is None:
        return []
    axes = view["axes"]
    cells = [cell for cell in view["cells"] if len(cell["runs"]) >= config.min_seeds]
    disagreeing = []
    for cell in cells:
        losses = np.array(cell["final_losses"], dtype=float)
        finite = losses[np.isfinite(losses)]
        mixed_divergence = 0 < finite.size < losses.size
        ratio = _spread(finite)
        if mixed_divergence or (ratio is not None and ratio >= config.spread_factor):
            disagreeing.append({**cell, "spread": ratio, "diverged": int(losses.size - finite.size)})
    if not disagreeing:
        return []

    names = [_label(cell, axes) for cell in disagreeing]
    parts = [
        f"{_label(cell, axes)}: {cell['fit']} of {len(cell['runs'])} fit, final loss "
        f"{_range(cell)}" + (f", {cell['diverged']} diverged" if cell["diverged"] else "")
        for cell in disagreeing
    ]
    recommendation = _recommend(view, cells, disagreeing, axes)
    return [
        Finding(
            check="seed_spread",
            severity=Severity.WARNING,
            study=study.name,
            runs=tuple(name for cell in disagreeing for name in cell["runs"]),
            title=(
                f"seeds disagree in {len(disagreeing)} of {len(cells)} configs ({'; '.join(names[:3])}"
                + ("; ..." if len(names) > 3 else "") + "): the result depends on the seed"
            ),
            detail=(
                "; ".join(parts)
                + f". A seed fits when its final loss is within {config.fit_factor:g}x of the study's best "
                f"({view['best_final_loss']:.3g}). Compare these configs by the median of several seeds, "
                "never by one."
            ),
            evidence={
                "axes": axes,
                "cells": disagreeing,
                "fit_threshold": view["fit_threshold"],
                "best_final_loss": view["best_final_loss"],
                "spread_factor": config.spread_factor,
                "configs_checked": len(cells),
            },
            recommendation=recommendation,
        )
    ]


def _spread(finite: np.ndarray) -> float | None:
    if finite.size < 2:
        return None
    if (finite > 0).all():
        return float(finite.max() / finite.min())
    median = abs(float(np.median(finite)))
    return float((finite.max() - finite.min()) / median) + 1 if median > 0 else None


def _recommend(view: dict, cells: list[dict], disagreeing: list[dict], axes: list[str]):
    reliable = [cell for cell in cells if cell["fit"] == len(cell["runs"])]
    if not reliable:
        return None
    best = min(reliable, key=lambda cell: float(np.median(cell["final_losses"])))
    lr = best.get("lr")
    momentum = best.get("momentum")
    label = _label(best, axes)
    why = (
        f"at {label} all {len(best['runs'])} seeds fit (final loss {_range(best)}), where the seeds of "
        f"{'; '.join(_label(c, axes) for c in disagreeing[:3])} disagree"
    )
    if "momentum" in axes and momentum is not None:
        return Recommendation(action="momentum", values={"value": momentum, "lr": lr}, why=why)
    if lr is not None:
        return Recommendation(action="lr", values={"value": lr}, why=why)
    return None


def _label(cell: dict, axes: list[str]) -> str:
    if not axes:
        return "the config"
    return " ".join(f"{axis}={_number(cell.get(axis))}" for axis in axes)


def _range(cell: dict) -> str:
    finite = [v for v in cell["final_losses"] if np.isfinite(v)]
    if not finite:
        return "diverged"
    return f"{min(finite):.3g}-{max(finite):.3g}"


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


CHECK = Check(
    id="seed_spread",
    scope=Scope.STUDY,
    detect=detect,
    config=Config(),
    module=sys.modules[__name__],
    applies=applies,
)
