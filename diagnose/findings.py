"""Findings and the ``diagnose.findings/1`` document (CONTRACT §2).

A check returns ``Finding`` objects; ``analyze`` ranks them and wraps them in a
``FindingsDocument``; every renderer reads that document and never decides
anything again.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np

FORMAT = "diagnose.findings/1"

ACTIONS = (
    "warmup",
    "clip",
    "lr",
    "momentum",
    "optimizer",
    "more_steps",
    "regularization",
    "schedule",
)


class Severity(str, Enum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2}


@dataclass(frozen=True)
class Recommendation:
    """What to change: an action of CONTRACT §2 and the numbers to copy."""

    action: str
    why: str
    values: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.action not in ACTIONS:
            raise ValueError(f"unknown recommendation action {self.action!r}")

    def to_dict(self) -> dict:
        return {"action": self.action, **to_jsonable(self.values), "why": self.why}

    @classmethod
    def from_dict(cls, data: dict) -> Recommendation:
        values = {k: v for k, v in data.items() if k not in ("action", "why")}
        return cls(action=data["action"], why=data.get("why", ""), values=values)


@dataclass(frozen=True)
class Finding:
    check: str
    severity: Severity
    study: str
    runs: tuple[str, ...]
    title: str
    detail: str
    steps: tuple[int, int] | None = None
    evidence: dict = field(default_factory=dict)
    recommendation: Recommendation | None = None

    def to_dict(self) -> dict:
        return {
            "check": self.check,
            "severity": self.severity.value,
            "study": self.study,
            "runs": list(self.runs),
            "steps": [int(self.steps[0]), int(self.steps[1])] if self.steps else None,
            "title": self.title,
            "detail": self.detail,
            "evidence": to_jsonable(self.evidence),
            "recommendation": self.recommendation.to_dict() if self.recommendation else None,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Finding:
        steps = data.get("steps")
        recommendation = data.get("recommendation")
        return cls(
            check=data["check"],
            severity=Severity(data["severity"]),
            study=data["study"],
            runs=tuple(data.get("runs") or ()),
            title=data["title"],
            detail=data.get("detail", ""),
            steps=(int(steps[0]), int(steps[1])) if steps else None,
            evidence=data.get("evidence") or {},
            recommendation=Recommendation.from_dict(recommendation) if recommendation else None,
        )


@dataclass
class FindingsDocument:
    """The analysis result that every renderer reads (CONTRACT §2, extended)."""

    root: str
    studies: list[dict]
    findings: list[Finding]
    unreadable: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)
    generated: str = ""
    tool_version: str = ""

    @property
    def verdict(self) -> str:
        """``errors``, ``warnings`` or ``healthy``, from the worst finding."""
        worst = max((f.severity for f in self.findings), key=lambda s: s.rank, default=None)
        if worst is Severity.ERROR:
            return "errors"
        if worst is Severity.WARNING:
            return "warnings"
        return "healthy"

    def worst_severity(self) -> Severity | None:
        return max((f.severity for f in self.findings), key=lambda s: s.rank, default=None)

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "tool": {"name": "diagnose", "version": self.tool_version},
            "generated": self.generated,
            "root": self.root,
            "verdict": self.verdict,
            "studies": to_jsonable(self.studies),
            "runs": to_jsonable(self.runs),
            "findings": [f.to_dict() for f in self.findings],
            "unreadable": list(self.unreadable),
            "skipped": list(self.skipped),
        }

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")

    @classmethod
    def from_dict(cls, data: dict) -> FindingsDocument:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} document (format: {data.get('format')!r})")
        return cls(
            root=data.get("root", ""),
            studies=data.get("studies", []),
            findings=[Finding.from_dict(f) for f in data.get("findings", [])],
            unreadable=data.get("unreadable", []),
            skipped=data.get("skipped", []),
            runs=data.get("runs", []),
            generated=data.get("generated", ""),
            tool_version=data.get("tool", {}).get("version", ""),
        )


def to_jsonable(value):
    """Plain JSON types; numpy scalars unwrapped, non-finite floats as strings."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:  # most leaves: a findings document of
        return value  # 10,000 runs is ~10^6 of them, and each isinstance below costs
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if math.isfinite(number):
            return number
        return "nan" if math.isnan(number) else ("inf" if number > 0 else "-inf")
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    return value


def round_sig(value: float, digits: int = 2) -> float:
    """``value`` rounded to ``digits`` significant digits, as a user would type it in a config."""
    if not math.isfinite(value) or value == 0:
        return float(value)
    return float(f"{value:.{digits}g}")
