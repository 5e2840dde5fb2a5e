"""loss_spike on the labelled corpus (real CPU runs with outlier batches at known steps) and on edge cases."""

from __future__ import annotations

import pytest
from conftest import cases_for

from corpus import edges
from diagnose.checks import loss_spike

POSITIVE, NEGATIVE = cases_for("loss_spike")


@pytest.mark.parametrize("name", POSITIVE)
def test_reports_the_spikes_of_the_runs_that_have_them(corpus, name):
    [finding] = corpus.findings("loss_spike", name)
    assert finding.severity.value in ("warning", "error")
    periods = finding.evidence["periods"][corpus.run(name).name]
    assert periods and finding.steps == (periods[0][0], periods[-1][1])


@pytest.mark.parametrize("name", NEGATIVE)
def test_quiet_on_runs_without_mid_training_spikes(corpus, name):
    assert corpus.findings("loss_spike", name) == []


def test_an_outlier_batch_at_step_300_is_one_spike_there_that_recovers_and_gets_a_clip_threshold(corpus):
    [finding] = corpus.findings("loss_spike", "spike_outlier_sgd")
    [[start, end]] = finding.evidence["periods"]["run"]
    assert start == 300 and end < 400
    assert finding.evidence["recovered"] and finding.evidence["recovery_step"] < 450
    assert finding.evidence["grad_norm_at_spikes"][0]["ratio"] > 10
    recommendation = finding.recommendation
    norms = corpus.run("spike_outlier_sgd").steps.query("step < 300")["grad_norm"]
    assert recommendation.action == "clip"
    assert recommendation.values["threshold"] == pytest.approx(norms.quantile(0.9), rel=0.05)
    assert set(recommendation.values) == {"threshold"}  # only what goes into a config
    assert "(steps 0-299)" in recommendation.why


def test_two_outlier_batches_are_two_periods_of_one_finding(corpus):
    [finding] = corpus.findings("loss_spike", "spike_two_outliers")
    assert [p[0] for p in finding.evidence["periods"]["run"]] == [200, 500]


def test_clipping_at_the_90th_percentile_absorbs_the_same_outlier(corpus):
    assert corpus.findings("loss_spike", "spike_outlier_clipped") == []


@pytest.mark.parametrize("factor", [1e-4, 1e4])
def test_scale_free(corpus, factor):
    run = corpus.run("spike_outlier_sgd")
    [original] = loss_spike.detect(run, loss_spike.Config())
    [scaled] = loss_spike.detect(edges.rescaled(run, factor), loss_spike.Config())
    assert scaled.steps == original.steps and scaled.evidence["periods"] == original.evidence["periods"]


def test_edge_cases(corpus):
    for name, run in edges.degenerate().items():
        assert loss_spike.detect(run, loss_spike.Config()) == [], name
    assert loss_spike.detect(edges.every(corpus.run("healthy_bs32_evals"), 50), loss_spike.Config()) == []


def test_short_and_range_test_runs_are_left_to_the_study_checks(corpus):
    import dataclasses

    from diagnose.checks import BY_ID

    run = corpus.run("spike_outlier_sgd")
    assert BY_ID["loss_spike"].why_skipped(dataclasses.replace(run, role="short")) is not None


def test_the_bumps_of_a_ringing_loss_are_left_to_momentum_oscillation(corpus):
    assert corpus.findings("momentum_oscillation", "bee_momentum_099")
    assert corpus.findings("loss_spike", "bee_momentum_099") == []
    assert corpus.findings("early_instability", "bee_momentum_099") == []


def test_a_small_wobble_of_a_noise_free_fit_is_info_only(corpus):
    [finding] = corpus.findings("loss_spike", "bee_momentum_095")
    assert finding.severity.value == "info" and max(e["ratio"] for e in finding.evidence["events"]) < 1.5
