"""What a check is: an id, what it looks at, what it needs, its thresholds and its function.

A check is a pure function: ``detect(run, config)`` for ``Scope.RUN`` or
``detect(study, config)`` for ``Scope.STUDY``, returning a list of findings.
It reads no file and draws nothing. When the data it needs is missing it is
skipped, and the report says so once.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from types import ModuleType

from ..findings import Finding
from ..model import Run, Study

DOC_SECTIONS = ("Detects", "Why", "Algorithm", "Example", "Recommends")


class Scope(str, Enum):
    RUN = "run"
    STUDY = "study"


@dataclass(frozen=True)
class Check:
    id: str
    scope: Scope
    detect: Callable[..., list[Finding]]
    config: object
    module: ModuleType
    # Columns of `steps` that must hold values (run checks).
    needs_columns: tuple[str, ...] = ()
    # Returns why the check cannot run on this run/study, or None when it can.
    applies: Callable[[Run | Study], str | None] | None = None

    @property
    def doc(self) -> str:
        return (self.module.__doc__ or "").strip()

    def sections(self) -> dict[str, str]:
        """The docstring's sections (``Detects:``, ``Why:``, ...) by name."""
        parts = re.split(rf"^({'|'.join(DOC_SECTIONS)}):[ \t]*$", self.doc, flags=re.M)
        return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}

    def why_skipped(self, target: Run | Study) -> str | None:
        if isinstance(target, Run):
            missing = [c for c in self.needs_columns if not target.has(c)]
            if missing:
                return f"no {', '.join(missing)} logged"
        return self.applies(target) if self.applies else None

    def configured(self, overrides: dict[str, str]) -> Check:
        """This check with thresholds overridden from ``name=value`` text (CLI ``--set``)."""
        if not overrides:
            return self
        fields = {f.name: f for f in dataclasses.fields(self.config)}
        values = {}
        for name, text in overrides.items():
            if name not in fields:
                known = ", ".join(fields) or "none"
                raise ValueError(f"{self.id} has no threshold {name!r} (known: {known})")
            current = getattr(self.config, name)
            values[name] = type(current)(text) if current is not None else float(text)
        return dataclasses.replace(self, config=dataclasses.replace(self.config, **values))
