"""grad_norm_outliers on real CPU runs with outlier batches at known steps, on healthy runs and on edge cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import cases_for
from hypothesis import given, settings
from hypothesis import strategies as st

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


def _all_points(norms, config):
    """The documented algorithm, every point's medians by pandas: what _outliers must return."""
    x = np.log10(norms)
    size = min(max(21, int(len(x) * config.window_fraction)), 1001) | 1
    centered = pd.Series(x).rolling(size, center=True, min_periods=1).median().to_numpy()
    trailing = pd.Series(x).shift(1).rolling(size, min_periods=5).median().to_numpy()
    typical = np.fmax(centered, trailing)
    sigma = max(1.4826 * float(np.median(np.abs(np.diff(x)))) / math.sqrt(2), 1e-12)
    excess = x - typical
    at = np.flatnonzero(np.isfinite(trailing) & (excess >= math.log10(config.min_ratio)) & (excess > config.z * sigma))
    return at, 10 ** excess[at], 10 ** typical[at]


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.one_of(st.integers(20, 300), st.integers(19_000, 26_000)),
    spikes=st.integers(0, 400),
    noise=st.sampled_from([0.01, 0.3, 1.0]),
    decimals=st.sampled_from([None, 1]),
    min_ratio=st.sampled_from([1.0, 1.5, 5.0]),
    scale=st.sampled_from([1.0, 1e-300, 1e300]),
)
def test_outliers_from_candidates_are_those_of_every_point(seed, n, spikes, noise, decimals, min_ratio, scale):
    # few candidates (medians one by one) and many (one rolling pass), ties, runs of spikes, both window ends;
    # at any scale (the first test, on the norms themselves, must find every candidate of the logs)
    rng = np.random.default_rng(seed)
    norms = np.exp(rng.normal(0, noise, n)) * np.linspace(10, 1, n) * scale
    norms[rng.integers(0, n, spikes)] *= rng.choice([3.0, 10.0, 100.0], spikes)
    if decimals is not None:
        norms = np.maximum(np.round(norms, decimals), 0.1)
    config = grad_norm_outliers.Config(min_ratio=min_ratio)
    got, expected = grad_norm_outliers._outliers(norms, config), _all_points(norms, config)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 3000),
    size=st.integers(10, 500).map(lambda h: 2 * h + 1),
    trend=st.sampled_from([-1.0, 0.0, 1.0]),
    decimals=st.sampled_from([None, 0]),
)
def test_median_floor_is_below_every_centered_median(seed, n, size, trend, decimals):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n) + trend * np.arange(n) / 10  # a monotone series puts the median on the floor
    if decimals is not None:
        x = np.round(x, decimals)
    centered = pd.Series(x).rolling(size, center=True, min_periods=1).median().to_numpy()
    assert (grad_norm_outliers._median_floor(x, size) <= centered).all()
