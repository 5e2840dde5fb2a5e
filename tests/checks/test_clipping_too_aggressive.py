"""clipping_too_aggressive on real CPU runs with tight, loose and p90 clipping thresholds, and edge cases."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from conftest import cases_for

from corpus import edges
from diagnose.checks import BY_ID, clipping_too_aggressive
from diagnose.model import Run

POSITIVE, NEGATIVE = cases_for("clipping_too_aggressive")
CHECK = BY_ID["clipping_too_aggressive"]


@pytest.mark.parametrize("name", POSITIVE)
def test_reports_runs_that_clip_most_updates(corpus, name):
    [finding] = corpus.findings("clipping_too_aggressive", name)
    run = corpus.run(name)
    clip = run.config["clip_norm"]
    measured = float((run.steps["grad_norm"] > clip).mean())
    assert finding.evidence["clipped_fraction"] == pytest.approx(measured) and measured > 0.5
    assert finding.evidence["clip_norm"] == clip


@pytest.mark.parametrize("name", NEGATIVE)
def test_quiet_otherwise(corpus, name):
    assert corpus.findings("clipping_too_aggressive", name) == []


def test_recommends_the_lr_that_clipping_amounted_to(corpus):
    run = corpus.run("clip_tight_regression")
    [finding] = corpus.findings("clipping_too_aggressive", "clip_tight_regression")
    factor = float(np.median(np.minimum(1, 0.02 / run.steps["grad_norm"])))
    assert finding.recommendation.action == "lr"
    assert finding.recommendation.values["value"] == pytest.approx(0.03 * factor, rel=0.05)
    assert finding.recommendation.values["value"] < 0.03 / 10
    assert finding.recommendation.values["clip_threshold"] == pytest.approx(run.steps["grad_norm"].quantile(0.9), rel=0.05)


def test_the_probe_logs_the_threshold_and_the_clipped_flag(corpus):
    run = corpus.run("clip_tight_classifier")
    assert run.has("clip_norm") and run.has("clipped")
    # Without grad norms, the `clipped` column alone decides.
    flags_only = dataclasses.replace(run, steps=run.steps.drop(columns=["grad_norm", "clip_norm"]), config={"lr": 0.1})
    assert CHECK.why_skipped(flags_only) is None
    [finding] = clipping_too_aggressive.detect(flags_only, clipping_too_aggressive.Config())
    assert finding.evidence["clipped_fraction"] > 0.5 and finding.recommendation.values["value"] == 0.05


def test_runs_without_clipping_are_skipped_with_a_reason(corpus):
    assert "no clipping threshold" in CHECK.why_skipped(corpus.run("healthy_bs32_evals"))


def test_edge_cases():
    for name, run in edges.degenerate().items():
        clipped = dataclasses.replace(run, config={"clip_norm": 1.0})
        assert edges.findings(CHECK, clipped) == [], name
    # A threshold that changes over time (a clip_norm column) and an inf grad norm (AMP) are handled per step.
    steps = pd.DataFrame({"step": np.arange(6), "loss": 1.0, "grad_norm": [2.0, 2.0, np.inf, 0.5, 0.5, 0.5],
                          "clip_norm": [1.0, 1.0, 1.0, 1.0, 1.0, 0.1]})
    run = Run(name="r", study="s", source=None, steps=steps)
    [finding] = clipping_too_aggressive.detect(run, clipping_too_aggressive.Config())
    assert finding.evidence["clipped_fraction"] == pytest.approx(3 / 5)
