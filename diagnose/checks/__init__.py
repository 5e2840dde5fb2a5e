"""The registry: one line per check. A new check is one module here and one line below."""

from __future__ import annotations

from . import divergence
from . import early_instability, loss_spike  # noqa: I001  (run-level instability checks)
from .registry import DOC_SECTIONS, Check, Scope

CHECKS: tuple[Check, ...] = (
    divergence.CHECK,
    early_instability.CHECK,
    loss_spike.CHECK,
)

BY_ID = {check.id: check for check in CHECKS}

__all__ = ["BY_ID", "CHECKS", "DOC_SECTIONS", "Check", "Scope"]
