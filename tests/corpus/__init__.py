"""The labelled corpus: small real training runs with the check ids each must (and must not) raise.

A case is one study folder ``root/<case.name>/`` holding one or more runs
written by ``diagnose.probe.Probe``. Cases live in several modules (each
engineer owns one): every module listed in ``CASE_MODULES`` has a ``CASES``
tuple of objects with

- ``name``: the case's (and its study's) name, unique across modules,
- ``build(root, study)``: trains and logs the runs into ``root/study/<run>``,
- ``expect``: check ids that must report a finding in this study,
- ``forbid``: check ids that must not (a false alarm if they do),
- ``why``: one line: what the runs are and why these labels.

A check id in neither set is not judged on that case.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

CASE_MODULES = ("run_cases", "study_cases")


@dataclass(frozen=True)
class Case:
    name: str
    build: object
    expect: frozenset[str] = field(default_factory=frozenset)
    forbid: frozenset[str] = field(default_factory=frozenset)
    why: str = ""


def all_cases() -> list:
    """Every case of every module in ``CASE_MODULES``, in order; names must be unique."""
    cases, seen = [], set()
    for module_name in CASE_MODULES:
        if importlib.util.find_spec(f"{__name__}.{module_name}") is None:
            continue  # that engineer's cases are not there yet
        module = importlib.import_module(f"{__name__}.{module_name}")
        for case in module.CASES:
            if case.name in seen:
                raise ValueError(f"corpus case {case.name!r} is defined twice")
            if set(case.expect) & set(case.forbid):
                raise ValueError(f"corpus case {case.name!r} both expects and forbids {set(case.expect) & set(case.forbid)}")
            seen.add(case.name)
            cases.append(case)
    return cases


def by_name() -> dict:
    return {case.name: case for case in all_cases()}


def build(case, root: Path) -> Path:
    """Write one case's runs under ``root``; returns its study folder."""
    case.build(Path(root), case.name)
    return Path(root) / case.name


@dataclass
class Score:
    """Per-check confusion counts over the judged cases, with the names of the cases it got wrong."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    misses: list[str] = field(default_factory=list)
    false_alarms: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None


def score(cases, reported: dict[str, set[str]]) -> dict[str, Score]:
    """``reported`` maps a case (study) name to the check ids with a finding there."""
    scores: dict[str, Score] = defaultdict(Score)
    for case in cases:
        found = reported.get(case.name, set())
        for check in case.expect:
            entry = scores[check]
            if check in found:
                entry.tp += 1
            else:
                entry.fn += 1
                entry.misses.append(case.name)
        for check in case.forbid:
            entry = scores[check]
            if check in found:
                entry.fp += 1
                entry.false_alarms.append(case.name)
            else:
                entry.tn += 1
    return dict(scores)
