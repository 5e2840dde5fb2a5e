"""early_instability on the labelled corpus (the catapult of a wide net above its stability limit) and edge cases."""

from __future__ import annotations

import pytest
from conftest import cases_for

from corpus import edges
from diagnose.checks import early_instability

POSITIVE, NEGATIVE = cases_for("early_instability")


@pytest.mark.parametrize("name", POSITIVE)
def test_reports_early_instability(corpus, name):
    [finding] = corpus.findings("early_instability", name)
    run = corpus.run(name)
    [[start, end]] = finding.evidence["periods"][run.name]
    assert start < 0.1 * run.max_steps
    # The period holds the run's worst early loss, and the loss really was higher there than before.
    early = run.steps.query("step <= @end")
    assert start <= early["loss"].idxmax() <= end
    assert early["loss"].max() > 5 * early["loss"].iloc[: max(start, 1)].min()


@pytest.mark.parametrize("name", NEGATIVE)
def test_quiet_without_early_instability(corpus, name):
    assert corpus.findings("early_instability", name) == []


def test_the_catapult_recovers_and_warmup_is_recommended(corpus):
    [finding] = corpus.findings("early_instability", "catapult_lr12")
    assert finding.severity.value == "warning"
    assert finding.evidence["recovered"] and finding.evidence["recovery_step"] <= 20
    assert finding.recommendation.action == "warmup"
    assert finding.recommendation.values["base_lr"] == 12.0
    assert finding.steps[1] < finding.recommendation.values["warmup_steps"] <= 30  # 10% of the 300-step run


@pytest.mark.parametrize("factor", [1e-4, 1e4])
def test_scale_free(corpus, factor):
    run = corpus.run("catapult_lr16")
    [original] = early_instability.detect(run, early_instability.Config())
    [scaled] = early_instability.detect(edges.rescaled(run, factor), early_instability.Config())
    assert scaled.evidence["periods"] == original.evidence["periods"]


def test_edge_cases(corpus):
    for name, run in edges.degenerate().items():
        assert early_instability.detect(run, early_instability.Config()) == [], name
    assert early_instability.detect(edges.every(corpus.run("healthy_bs32_evals"), 50), early_instability.Config()) == []
