"""The registry: one line per check. A new check is one module here and one line below."""

from __future__ import annotations

from . import divergence
from . import best_lr_at_edge, lr_range, seed_spread, short_run_instability, unstable_above_best_lr  # noqa: I001  (study checks)
from . import clipping_too_aggressive, early_instability, grad_norm_outliers, loss_spike, momentum_oscillation, overfitting, underfitting  # noqa: I001  (run checks)
from .registry import DOC_SECTIONS, Check, Scope

CHECKS: tuple[Check, ...] = (
    divergence.CHECK,
    early_instability.CHECK,
    loss_spike.CHECK,
    grad_norm_outliers.CHECK,
    clipping_too_aggressive.CHECK,
    overfitting.CHECK,
    underfitting.CHECK,
    momentum_oscillation.CHECK,
    unstable_above_best_lr.CHECK,
    best_lr_at_edge.CHECK,
    short_run_instability.CHECK,
    lr_range.CHECK,
    seed_spread.CHECK,
)

BY_ID = {check.id: check for check in CHECKS}

__all__ = ["BY_ID", "CHECKS", "DOC_SECTIONS", "Check", "Scope"]
