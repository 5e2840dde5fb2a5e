"""underfitting on real CPU runs (lr 1000x too small; runs stopped while falling) vs converged runs, and edge cases."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import cases_for

from corpus import edges
from diagnose.checks import BY_ID, underfitting

POSITIVE, NEGATIVE = cases_for("underfitting")
CHECK = BY_ID["underfitting"]


@pytest.mark.parametrize("name", POSITIVE)
def test_reports_runs_that_end_far_from_converged(corpus, name):
    [finding] = corpus.findings("underfitting", name)
    assert finding.evidence["kind"] in ("barely_moved", "still_falling")
    assert finding.recommendation.action in ("lr", "more_steps")


@pytest.mark.parametrize("name", NEGATIVE)
def test_quiet_on_converged_runs(corpus, name):
    assert edges.findings(CHECK, corpus.run(name)) == []


def test_a_tiny_lr_barely_moves_and_gets_a_10x_larger_lr(corpus):
    run = corpus.run("tiny_lr_classifier")
    [finding] = corpus.findings("underfitting", "tiny_lr_classifier")
    loss = run.steps["loss"].to_numpy()
    assert abs(1 - np.median(loss[-60:]) / np.median(loss[:60])) < 0.02  # measured here
    assert finding.evidence["kind"] == "barely_moved" and finding.severity.value == "warning"
    assert finding.recommendation.values["value"] == pytest.approx(1e-3)


def test_a_run_stopped_while_falling_gets_more_steps(corpus):
    [finding] = corpus.findings("underfitting", "still_falling_classifier")
    assert finding.evidence["kind"] == "still_falling" and finding.severity.value == "info"
    assert finding.evidence["slope_per_step"] < 0
    assert finding.recommendation.values["max_steps"] == 600


def test_an_annealed_lr_explains_a_fall_at_the_end(corpus):
    run = corpus.run("still_falling_classifier")
    steps = run.steps.copy()
    steps["lr"] = np.linspace(0.02, 0.0, len(steps))
    assert underfitting.detect(dataclasses.replace(run, steps=steps), underfitting.Config()) == []


def test_edge_cases(corpus):
    for name, run in edges.degenerate().items():
        findings = edges.findings(CHECK, run)
        # A constant loss did barely move; everything else has too little to say.
        assert [f.evidence["kind"] for f in findings] == (["barely_moved"] if name == "constant" else []), name
    for factor in (1e-4, 1e4):
        [finding] = underfitting.detect(edges.rescaled(corpus.run("tiny_lr_classifier"), factor), underfitting.Config())
        assert finding.evidence["kind"] == "barely_moved"
    assert edges.findings(CHECK, edges.every(corpus.run("healthy_bs32_evals"), 50)) == []
    assert "LR range test" in CHECK.why_skipped(dataclasses.replace(corpus.run("tiny_lr_classifier"), role="lr_range"))


def test_a_tail_that_surely_falls_too_little_is_judged_as_the_fit_judges_it():
    """``_tail_slope``'s closed-form shortcut answers (0.0, inf) only where the fit's tail drop is under the one asked."""
    from diagnose.checks.underfitting import _tail_slope

    rng = np.random.default_rng(7)
    shortcuts = 0
    for case in range(400):
        n = int(rng.integers(10, 400))
        steps = np.sort(rng.choice(10**int(rng.integers(3, 7)), n, replace=False)) + int(rng.integers(0, 10**6))
        trend = rng.normal(0, 1) * 10.0 ** rng.uniform(-6, -1)
        loss = 10 ** (trend * (steps - steps[0]) / max(1, steps[-1] - steps[0]) + rng.normal(0, 10.0 ** rng.uniform(-4, -1), n))
        to_x = np.log10 if case % 2 else None
        span = steps[-1] - steps[0]
        least = abs(trend) * rng.uniform(0, 3) * (1 if case % 3 else 1e-12)
        fitted = _tail_slope(steps, loss, to_x)
        judged = _tail_slope(steps, loss, to_x, least)
        if judged != fitted:
            shortcuts += 1
            assert judged == (0.0, float("inf")) and -fitted[0] * span < least
        else:
            assert judged == fitted
    assert shortcuts > 50
