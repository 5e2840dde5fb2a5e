"""The run checks on real public logs (../shared/realworld), against labels judged by eye (benchmarks/realworld_labels.py)."""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

import pytest

from diagnose.analyze import analyze
from diagnose.checks import BY_ID
from diagnose.readers import read_root

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import realworld_labels  # noqa: E402


@lru_cache(maxsize=1)
def _analysed(folder: Path):
    loaded = read_root(folder)
    reported: dict[str, set[str]] = {}
    for finding in analyze(loaded).document.findings:
        for name in finding.runs:
            reported.setdefault(f"{finding.study}/{name}", set()).add(finding.check)
    return {run.key: run for run in loaded.runs}, reported


@pytest.mark.parametrize("key", sorted(realworld_labels.LABELS))
def test_labelled_real_run(shared, key):
    runs, reported = _analysed(shared / "realworld")
    assert key in runs, f"{key} was not read from {shared / 'realworld'}"
    expect, forbid, why = realworld_labels.label(key)
    found = reported.get(key, set())
    judged = {c for c in expect | forbid if BY_ID[c].why_skipped(runs[key]) is None}
    assert expect & judged <= found, f"{key} ({why}): missed {sorted((expect & judged) - found)}"
    assert not (forbid & judged & found), f"{key} ({why}): false alarm {sorted(forbid & judged & found)}"
