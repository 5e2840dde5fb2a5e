"""overfitting on real CPU runs (big nets on 100-200 noisy samples vs the same net on 8192) and edge cases."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from conftest import cases_for
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from corpus import edges
from diagnose.checks import BY_ID, overfitting
from diagnose.model import Run

POSITIVE, NEGATIVE = cases_for("overfitting")
CHECK = BY_ID["overfitting"]


@pytest.mark.parametrize("name", POSITIVE)
def test_reports_valid_rising_while_train_falls_with_the_onset(corpus, name):
    [finding] = corpus.findings("overfitting", name)
    run = corpus.run(name)
    valid = run.valid_evals().set_index("step")["loss"]
    onset = finding.evidence["onset_step"]
    assert finding.evidence["split"] == "valid"
    assert valid[onset:].iloc[-3:].median() > 1.5 * valid[onset]  # measured here
    assert finding.evidence["gap_end"] > finding.evidence["gap_start"]
    assert finding.recommendation.action == "regularization" and finding.recommendation.values["max_steps"] == onset


@pytest.mark.parametrize("name", NEGATIVE)
def test_quiet_otherwise(corpus, name):
    assert edges.findings(CHECK, corpus.run(name)) == []


def test_uses_train_evals_for_the_gap_when_logged(corpus):
    run = corpus.run("overfit_classifier_100")
    assert len(run.train_evals()) > 10
    [finding] = corpus.findings("overfitting", "overfit_classifier_100")
    step, gap = finding.evidence["gap"][-1]
    train = run.train_evals().set_index("step")["loss"][step]
    assert gap == pytest.approx(run.valid_evals().set_index("step")["loss"][step] - train)


def test_validation_rising_with_the_training_loss_is_not_overfitting(corpus):
    run = corpus.run("overfit_classifier_sgd")
    steps = run.steps.copy()
    steps["loss"] = steps["loss"].to_numpy()[::-1]  # training loss now rises as the valid loss does
    assert overfitting.detect(dataclasses.replace(run, steps=steps), overfitting.Config()) == []


def test_edge_cases(corpus):
    for name, run in edges.degenerate().items():
        assert edges.findings(CHECK, run) == [], name
    for factor in (1e-4, 1e4):
        [finding] = overfitting.detect(edges.rescaled(corpus.run("overfit_classifier_sgd"), factor), overfitting.Config())
        assert finding.evidence["onset_step"] == 24
    # A constant validation loss, and a single late eval, are not overfitting.
    flat = Run(name="r", study="s", source=None,
               steps=pd.DataFrame({"step": np.arange(100), "loss": np.linspace(1, 0.1, 100)}),
               evals=pd.DataFrame({"step": np.arange(0, 100, 10), "split": "val", "loss": 0.5}))
    assert overfitting.detect(flat, overfitting.Config()) == []
    assert "fewer than 5" in CHECK.why_skipped(dataclasses.replace(flat, evals=flat.evals.iloc[-1:]))


@given(hnp.arrays(np.float64, st.integers(2, 40), elements=st.one_of(st.floats(-1e6, 1e6), st.just(np.nan))))
def test_interpolate_is_pandas_interpolate_both_directions(values):
    assume(np.isfinite(values).sum() >= 2)  # as _train_at asks
    expected = pd.Series(values).interpolate(limit_direction="both").to_numpy()
    np.testing.assert_array_equal(overfitting._interpolate(values), expected)


def test_the_most_evaluated_split_alone_and_one_mean_per_step():
    steps = np.arange(0, 200, 10)
    valid = 0.5 + ((steps - 80) / 100.0) ** 2  # best near step 80, then rising
    train = pd.DataFrame({"step": np.arange(200), "loss": np.linspace(2, 0.1, 200)})
    # two evals of each step, one of them non-finite, and a few flat test evals
    evals = pd.DataFrame({
        "step": np.concatenate((steps, steps, [50, 150, 190])),
        "split": ["valid"] * 40 + ["test"] * 3,
        "loss": np.concatenate((valid - 0.01, valid + 0.01, [0.4, 0.4, 0.4])),
    })
    evals.loc[5, "loss"] = np.inf
    # the same run, logged once per step: the means, and at step 50 the one finite eval
    means = valid.copy()
    means[5] = valid[5] + 0.01
    once = pd.DataFrame({"step": steps, "split": "valid", "loss": means})
    [finding] = overfitting.detect(Run(name="r", study="s", source=None, steps=train, evals=evals), overfitting.Config())
    [expected] = overfitting.detect(Run(name="r", study="s", source=None, steps=train, evals=once), overfitting.Config())
    assert finding.evidence["split"] == "valid"
    assert finding.to_dict() == expected.to_dict()
