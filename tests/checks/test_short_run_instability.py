"""short_run_instability on real short runs at 2x lr* (CPU) and on edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from diagnose.checks import short_run_instability as check
from diagnose.model import Study

torch = pytest.importorskip("torch")
from conftest import cases_for  # noqa: E402
from test_sweep import decaying, make_run  # noqa: E402

POSITIVE, NEGATIVE = cases_for("short_run_instability")


def detect(case: Study):
    reason = check.CHECK.why_skipped(case)
    return None if reason else check.detect(case, check.Config())


@pytest.mark.parametrize("name, lr, best_lr", [("short_catapult_lr8", 8.0, 4.0), ("short_catapult_lr6", 6.0, 3.0)])
def test_early_instability_then_recovery_is_caught_although_the_end_looks_fine(corpus, name, lr, best_lr):
    case = corpus.study(name)
    short = next(r for r in case.runs if r.role == "short")
    best_run = next(r for r in case.runs if r.lr == best_lr)
    # The end looks fine (measured here): a quarter of the start, within 2x of the lr* run.
    end = np.median(short.steps["loss"].to_numpy()[-50:])
    assert end < 0.25 * short.steps["loss"].iloc[0]
    assert end < 2 * np.median(best_run.steps["loss"].to_numpy()[-50:])
    [finding] = detect(case)
    assert finding.severity.value == "warning"
    assert finding.evidence["lr"] == lr and finding.evidence["best_lr"] == best_lr
    assert finding.evidence["lr_ratio"] == pytest.approx(2.0)
    assert finding.runs == (short.name, best_run.name)
    [start, end] = finding.evidence["periods"][short.name][0]
    assert end < 25  # early: within the first 5% of the 500 steps
    assert finding.evidence["recovered"] is True
    assert start <= end < finding.evidence["recovery_step"] < 40
    # The loss really jumped: over 5x its first values inside the period (measured here).
    loss = short.steps.set_index("step")["loss"]
    assert loss.loc[start:end].max() > 5 * loss.iloc[:3].min()
    # The lr* run shows no period over the same steps.
    assert list(finding.evidence["best_run_events"]) == [best_run.name]
    assert finding.evidence["best_run_events"][best_run.name] == []
    assert "early instability" in finding.title and "recovered" in finding.title
    rec = finding.recommendation
    assert rec.action == "warmup" and rec.values["base_lr"] == pytest.approx(10 * lr)
    assert rec.values["warmup_steps"][0] == 10 and max(rec.values["warmup_steps"]) <= 50


def test_the_dense_validation_loss_joins_the_training_loss_period(corpus):
    [finding] = detect(corpus.study("short_catapult_lr6"))
    [valid] = finding.evidence["valid_events"]
    [train, *_] = finding.evidence["train_events"]
    assert abs(valid["start_step"] - train["start_step"]) <= 5


@pytest.mark.parametrize("name", ["short_stable_wide", "short_stable_classifier"])
def test_quiet_when_the_short_run_trains_smoothly_even_if_its_validation_loss_overfits(corpus, name):
    case = corpus.study(name)
    short = next(r for r in case.runs if r.role == "short")
    assert len(short.valid_evals()) == 500  # evaluated every step
    assert detect(case) == []


def test_skipped_without_a_short_run():
    assert check.CHECK.why_skipped(Study("s", [make_run("a", decaying(), 0.1)])) == "no run with role short"


def test_a_short_run_that_never_recovers_says_so():
    rng = np.random.default_rng(0)
    loss = np.concatenate([decaying(n=100, end=0.2), 0.2 * np.exp(np.linspace(0, 4, 400))]) * np.exp(
        0.05 * rng.standard_normal(500))
    case = Study("s", [make_run("best", decaying(n=500), 0.1), make_run("short", loss, 0.2, role="short")])
    [finding] = detect(case)
    assert finding.evidence["recovered"] is False and finding.evidence["recovery_step"] is None
    assert "did not recover" in finding.title


def test_a_short_run_alone_without_a_sweep_is_still_judged():
    loss = decaying(n=500, noise=0.02)
    loss[20:30] *= 30
    [finding] = detect(Study("s", [make_run("short", loss, 0.2, role="short")]))
    assert finding.evidence["best_lr"] is None and finding.evidence["recovered"] is True
    assert 15 <= finding.evidence["periods"]["short"][0][0] <= 20


@pytest.mark.parametrize("name", POSITIVE)
def test_every_corpus_case_labelled_with_it_gets_a_finding(corpus, name):
    assert detect(corpus.study(name))


@pytest.mark.parametrize("name", NEGATIVE)
def test_quiet_on_every_corpus_case_that_forbids_it(corpus, name):
    assert not detect(corpus.study(name))


@pytest.mark.parametrize("factor", [1e-4, 1e4])
def test_losses_of_any_scale_give_the_same_periods(corpus, factor):
    from test_sweep import rescaled

    case = corpus.study("short_catapult_lr8")
    [original] = detect(case)
    [scaled] = detect(rescaled(case, factor))
    assert scaled.evidence["periods"] == original.evidence["periods"]
    assert scaled.evidence["recovery_step"] == original.evidence["recovery_step"]
