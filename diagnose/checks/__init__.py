"""The registry: one line per check. A new check is one module here and one line below."""

from __future__ import annotations

from . import divergence
from . import clipping_too_aggressive, early_instability, grad_norm_outliers, loss_spike  # noqa: I001  (run checks)
from .registry import DOC_SECTIONS, Check, Scope

CHECKS: tuple[Check, ...] = (
    divergence.CHECK,
    early_instability.CHECK,
    loss_spike.CHECK,
    grad_norm_outliers.CHECK,
    clipping_too_aggressive.CHECK,
)

BY_ID = {check.id: check for check in CHECKS}

__all__ = ["BY_ID", "CHECKS", "DOC_SECTIONS", "Check", "Scope"]
