"""Every registered check is documented (Detects/Why/Algorithm/Example/Recommends) and has labelled corpus cases."""

from __future__ import annotations

import dataclasses

import pytest

from diagnose.checks import CHECKS, DOC_SECTIONS

pytest.importorskip("torch")
import corpus  # noqa: E402  (the corpus trains with torch)

CASES = corpus.all_cases()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.id)
def test_docstring_has_every_section(check):
    sections = check.sections()
    missing = [name for name in DOC_SECTIONS if not sections.get(name)]
    assert not missing, f"{check.id}: docstring lacks {missing}"


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.id)
def test_has_two_positive_and_two_negative_labelled_cases(check):
    positive = [c.name for c in CASES if check.id in c.expect]
    negative = [c.name for c in CASES if check.id in c.forbid]
    assert len(positive) >= 2, f"{check.id}: {len(positive)} corpus cases expect it ({positive})"
    assert len(negative) >= 2, f"{check.id}: {len(negative)} corpus cases forbid it ({negative})"


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.id)
def test_thresholds_are_a_frozen_config(check):
    assert dataclasses.is_dataclass(check.config) and check.config.__dataclass_params__.frozen


def test_every_case_says_why():
    assert all(case.why for case in CASES)
    assert len({case.name for case in CASES}) == len(CASES)
