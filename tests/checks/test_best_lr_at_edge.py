"""best_lr_at_edge on real lr sweeps (CPU) and on edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from diagnose.checks import best_lr_at_edge as check
from diagnose.model import Study

torch = pytest.importorskip("torch")
from conftest import cases_for  # noqa: E402
from test_sweep import decaying, make_run  # noqa: E402

POSITIVE, NEGATIVE = cases_for("best_lr_at_edge")


def detect(case: Study):
    reason = check.CHECK.why_skipped(case)
    return None if reason else check.detect(case, check.Config())


@pytest.mark.parametrize(
    "name, unstable_lr, max_steps",
    [
        ("sweep_edge_classifier", 0.25, 300),
        ("sweep_edge_regression_valid", 0.14, 400),
        ("sweep_edge_slow_climb", 0.3, 300),
        ("sweep_two_lrs_edge", 0.25, 300),
    ],
)
def test_lr_star_at_the_edge_of_instability_recommends_the_playbooks_warmup_experiment(corpus, name, unstable_lr, max_steps):
    [finding] = detect(corpus.study(name))
    assert finding.evidence["kind"] == "instability"
    assert finding.evidence["best_lr"] == 0.1 and finding.evidence["unstable_lr"] == unstable_lr
    rec = finding.recommendation
    assert rec.action == "warmup"
    assert rec.values["base_lr"] == pytest.approx(10 * unstable_lr)
    warmups = rec.values["warmup_steps"]
    assert warmups[0] == 10 and max(warmups) <= 0.1 * max_steps
    assert all(b / a >= 3 for a, b in zip(warmups, warmups[1:]))  # orders of magnitude apart
    assert rec.values["post_warmup_steps"] == [2 * w for w in warmups]
    assert rec.values["max_steps"] == [max_steps + w for w in warmups]
    for experiment in rec.values["experiments"]:
        assert ("note" in experiment) == (experiment["warmup_steps"] > 0.05 * max_steps)


def test_best_lr_at_the_top_of_the_tried_range_asks_for_larger_lrs(corpus):
    [finding] = detect(corpus.study("sweep_best_at_top"))
    assert finding.evidence["kind"] == "sweep_top" and finding.evidence["best_lr"] == 0.03
    assert finding.recommendation.action == "lr"
    assert finding.recommendation.values["try"] == [0.09, 0.3]



def test_best_at_the_bottom_of_the_range_asks_for_smaller_lrs():
    case = Study("s", [make_run(f"r{lr}", decaying(end=end, seed=i), lr)
                       for i, (lr, end) in enumerate(((0.01, 0.05), (0.03, 0.1), (0.1, 0.2)))])
    [finding] = detect(case)
    assert finding.evidence["kind"] == "sweep_bottom"
    assert finding.recommendation.values["try"] == [0.0033, 0.001]


def test_two_stable_lrs_say_nothing_about_the_range():
    case = Study("s", [make_run("a", decaying(end=0.2), 0.1), make_run("b", decaying(end=0.1, seed=1), 0.3)])
    assert detect(case) == []


def test_an_unstable_lr_far_above_lr_star_is_not_an_edge():
    case = Study("s", [
        make_run("a", decaying(end=0.2), 0.001),
        make_run("b", decaying(end=0.1, seed=1), 0.01),
        make_run("c", decaying(end=0.15, seed=2), 0.02),
        make_run("d", [np.nan] * 300, 1.0),
    ])
    assert detect(case) == []


def test_a_sweep_spaced_by_decades_does_not_locate_the_edge():
    case = Study("s", [
        make_run("a", decaying(end=0.2), 0.01),
        make_run("b", decaying(end=0.1, seed=1), 0.1),
        make_run("c", [1.0] * 50 + [np.nan] * 250, 1.0),
    ])
    assert detect(case) == []


@pytest.mark.parametrize("name", POSITIVE)
def test_every_corpus_case_labelled_with_it_gets_a_finding(corpus, name):
    assert detect(corpus.study(name))


@pytest.mark.parametrize("name", NEGATIVE)
def test_quiet_on_every_corpus_case_that_forbids_it(corpus, name):
    assert not detect(corpus.study(name))


def test_tied_scores_do_not_put_lr_star_at_an_end():
    same = decaying(end=0.1)
    case = Study("s", [make_run(f"r{lr}", same, lr) for lr in (0.1, 0.3, 1.0)])
    assert detect(case) == []


def test_lr_star_with_a_recovered_spike_of_its_own_is_still_at_the_edge():
    spiky = decaying(end=0.1, noise=0.02, seed=1)
    spiky[150:160] *= 20
    case = Study("s", [
        make_run("a", decaying(end=0.3, noise=0.02), 0.03),
        make_run("b", spiky, 0.1),
        make_run("c", [1.0] * 50 + [np.nan] * 250, 0.3),
    ])
    [finding] = detect(case)
    assert finding.evidence["kind"] == "instability" and finding.evidence["best_stable"] is False
    assert finding.evidence["unstable_lr"] == 0.3


@pytest.mark.parametrize("factor", [1e-4, 1e4])
def test_losses_of_any_scale_give_the_same_finding(corpus, factor):
    from test_sweep import rescaled

    case = corpus.study("sweep_edge_slow_climb")
    [original] = detect(case)
    [scaled] = detect(rescaled(case, factor))
    assert scaled.evidence == original.evidence
    assert scaled.recommendation == original.recommendation


def test_skipped_when_every_lr_diverged():
    case = Study("s", [make_run(f"r{lr}", [np.nan] * 50, lr) for lr in (0.1, 0.3, 1.0)])
    assert "every lr of the sweep diverged" in check.CHECK.why_skipped(case)
