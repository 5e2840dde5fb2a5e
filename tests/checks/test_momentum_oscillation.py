"""momentum_oscillation on Morrison's sin bees (seed 000) at momentum 0.99 vs 0.9 and 0, and edge cases."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import cases_for
from scipy import signal as sps

from corpus import edges
from diagnose.checks import BY_ID, momentum_oscillation

POSITIVE, NEGATIVE = cases_for("momentum_oscillation")
CHECK = BY_ID["momentum_oscillation"]


@pytest.mark.parametrize("name", POSITIVE)
def test_reports_ringing_at_momentum_099(corpus, name):
    [finding] = corpus.findings("momentum_oscillation", name)
    run = corpus.run(name)
    period = finding.evidence["period_steps"]
    # Independently: the grad norm's spectrum peaks near 1/period (scipy's periodogram of the log, detrended).
    norms = np.log10(run.steps["grad_norm"].to_numpy())
    frequencies, power = sps.periodogram(norms - np.convolve(norms, np.ones(31) / 31, mode="same"))
    peak = frequencies[5:][np.argmax(power[5:])]
    assert 1 / peak == pytest.approx(period, rel=0.25)
    assert finding.evidence["momentum"] == 0.99
    assert finding.evidence["effective_lr"] == pytest.approx(run.lr / 0.01)


@pytest.mark.parametrize("name", NEGATIVE)
def test_quiet_otherwise(corpus, name):
    assert edges.findings(CHECK, corpus.run(name)) == []


def test_recommends_momentum_09_with_the_lr_that_keeps_the_effective_step(corpus):
    [finding] = corpus.findings("momentum_oscillation", "bee_momentum_099")
    values = finding.recommendation.values
    assert finding.recommendation.action == "momentum"
    assert values["value"] == 0.9 and values["lr"] == pytest.approx(0.1) and values["effective_lr"] == pytest.approx(1.0)
    assert [g["momentum"] for g in values["grid"]] == [0.9, 0.95, 0.97]
    assert all(g["lr"] / (1 - g["momentum"]) == pytest.approx(1.0) for g in values["grid"])


def test_low_momentum_runs_are_skipped_with_a_reason(corpus):
    assert "momentum below" in CHECK.why_skipped(corpus.run("bee_momentum_0"))


def test_edge_cases(corpus):
    for name, run in edges.degenerate().items():
        assert edges.findings(CHECK, dataclasses.replace(run, config={"lr": 0.1, "momentum": 0.99})) == [], name
    for factor in (1e-4, 1e4):
        [finding] = momentum_oscillation.detect(edges.rescaled(corpus.run("bee_momentum_099"), factor),
                                                momentum_oscillation.Config())
        assert finding.evidence["period_steps"] == 5
    assert edges.findings(CHECK, edges.every(corpus.run("healthy_bs32_evals"), 50)) == []
