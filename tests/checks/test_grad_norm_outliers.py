"""grad_norm_outliers on real CPU runs with outlier batches at known steps, on healthy runs and on edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import cases_for

from corpus import edges
from diagnose.checks import grad_norm_outliers

POSITIVE, NEGATIVE = cases_for("grad_norm_outliers")


def detect(run):
    return grad_norm_outliers.detect(run, grad_norm_outliers.Config())


@pytest.mark.parametrize("name", POSITIVE)
def test_reports_runs_with_outlier_grad_norms(corpus, name):
    [finding] = corpus.findings("grad_norm_outliers", name)
    run = corpus.run(name)
    norms = run.steps.set_index("step")["grad_norm"]
    worst = finding.evidence["outlier_steps"][int(np.argmax(finding.evidence["outlier_ratios"]))]
    assert norms[worst] > 5 * norms.median()  # measured here, independently of the check


@pytest.mark.parametrize("name", NEGATIVE)
def test_quiet_on_runs_without_outliers(corpus, name):
    assert corpus.findings("grad_norm_outliers", name) == []


def test_the_outlier_batch_at_step_300_and_the_90th_percentile_threshold(corpus):
    run = corpus.run("spike_outlier_sgd")
    [finding] = corpus.findings("grad_norm_outliers", "spike_outlier_sgd")
    assert finding.evidence["outlier_steps"][0] == 300
    assert finding.severity.value == "warning" and finding.evidence["loss_instability_steps"] == [300]
    start, end = finding.evidence["window"]
    window = run.steps.query("@start <= step <= @end")["grad_norm"]
    assert start == 40 and end == 799  # after the first 5% (init transient)
    assert finding.evidence["threshold"] == pytest.approx(np.percentile(window, 90), rel=1e-2)
    assert finding.evidence["clipped_updates"] == int((window > finding.evidence["threshold"]).sum())
    assert finding.evidence["clipped_fraction"] == pytest.approx(0.1, abs=0.01)
    assert finding.recommendation.action == "clip"
    assert finding.recommendation.values["threshold"] == pytest.approx(finding.evidence["threshold"], rel=0.05)


def test_an_outlier_that_clipping_absorbed_is_info_only(corpus):
    [finding] = corpus.findings("grad_norm_outliers", "spike_outlier_clipped")
    assert finding.severity.value == "info" and finding.evidence["outlier_steps"] == [300]


def test_a_diverged_run_gets_a_threshold_from_before_the_divergence(corpus):
    [finding] = corpus.findings("grad_norm_outliers", "catapult_lr16")
    assert finding.evidence["outlier_steps"][0] < 10  # the catapult, at steps 3-7
    assert finding.evidence["threshold"] < 10 * finding.evidence["median"]


def test_edge_cases(corpus):
    for name, run in edges.degenerate().items():
        assert edges.findings(grad_norm_outliers.CHECK, run) == [], name
    assert detect(edges.every(corpus.run("healthy_bs4_momentum"), 50)) == []
    for factor in (1e-4, 1e4):  # the loss scale does not matter; the outliers are the same
        [finding] = detect(edges.rescaled(corpus.run("spike_outlier_sgd"), factor))
        assert finding.evidence["outlier_steps"][0] == 300
