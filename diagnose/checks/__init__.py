"""The registry: one line per check. A new check is one module here and one line below."""

from __future__ import annotations

from . import divergence
from .registry import DOC_SECTIONS, Check, Scope

CHECKS: tuple[Check, ...] = (
    divergence.CHECK,
)

BY_ID = {check.id: check for check in CHECKS}

__all__ = ["BY_ID", "CHECKS", "DOC_SECTIONS", "Check", "Scope"]
