"""lr_range on real LR range tests (CPU: an MLP at batch 64 and 8, a CNN) and on edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from diagnose.checks import lr_range as check
from diagnose.model import Study

torch = pytest.importorskip("torch")
from conftest import cases_for  # noqa: E402
from corpus import study_cases  # noqa: E402  (needs torch)
from test_sweep import decaying, make_run  # noqa: E402

POSITIVE, NEGATIVE = cases_for("lr_range")


def detect(case: Study):
    reason = check.CHECK.why_skipped(case)
    return None if reason else check.detect(case, check.Config())


@pytest.mark.parametrize("name, low, high", [
    ("range_mlp_clean", 0.08, 0.3), ("range_mlp_noisy", 0.03, 0.15), ("range_cnn", 0.1, 0.4),
])
def test_lr_max_is_where_the_loss_stops_falling_before_it_blows_up(corpus, name, low, high):
    case = corpus.study(name)
    [run] = case.runs
    [finding] = detect(case)
    assert finding.severity.value == "info"
    evidence = finding.evidence
    assert low <= evidence["lr_max"] <= high
    assert evidence["lr_max"] < evidence["blowup_lr"]
    assert evidence["lr_min"] == pytest.approx(evidence["lr_max"] / 4, rel=0.02)
    assert evidence["lr_min_1cycle"] == pytest.approx(evidence["lr_max"] / 10, rel=0.02)
    # Measured here: the loss near lr_max is far below the start, and it is far above its best after blowup_lr.
    steps = run.steps
    start = steps["loss"].iloc[:15].median()
    near_max = steps.loc[(steps["lr"] > evidence["lr_max"] / 1.5) & (steps["lr"] < evidence["lr_max"] * 1.5), "loss"]
    assert near_max.median() < 0.6 * start
    after = steps.loc[steps["lr"] >= evidence["blowup_lr"], "loss"].to_numpy()
    assert not np.isfinite(after).all() or after.max() > 2 * near_max.median()
    rec = finding.recommendation
    assert rec.action == "schedule" and rec.values["schedule"] == "1cycle"
    assert rec.values["max_lr"] == pytest.approx(evidence["lr_max"], rel=0.05)  # rounded to paste
    assert (rec.values["max_momentum"], rec.values["base_momentum"]) == (0.95, 0.85)
    assert "OneCycleLR(" in rec.why


def test_noisy_batches_do_not_move_lr_max_where_the_raw_steepest_point_jumps(tmp_path):
    """Three seeds at batch size 8: lr_max agrees within 1.5x; the raw curve's steepest point spreads far wider."""
    estimates, steepest = [], []
    for seed in (0, 1, 2):
        study_cases.range_test(tmp_path, "noisy", model="mlp", batch_size=8, seed=seed)
    from diagnose.readers import read_root

    for run in read_root(tmp_path / "noisy").runs:
        steps = run.steps
        result = check.analyse(steps["step"].to_numpy(), steps["lr"].to_numpy(), steps["loss"].to_numpy(),
                               check.Config())
        estimates.append(result.lr_max)
        finite = steps[np.isfinite(steps["loss"]) & (steps["loss"] < 1e3)]
        steepest.append(finite["lr"].iloc[int(np.argmin(np.gradient(np.log(finite["loss"]))))])
    assert max(estimates) / min(estimates) < 1.5
    assert max(steepest) / min(steepest) > 2 * max(estimates) / min(estimates)


def _range_run(loss, lrs, name="range"):
    run = make_run(name, loss, None, role="lr_range")
    run.steps = run.steps.assign(lr=lrs)
    return run


def test_a_range_that_stops_before_the_blowup_gives_a_lower_bound():
    lrs = np.geomspace(1e-5, 0.1, 200)
    loss = 1.4 / (1 + (lrs / 1e-3)) + 0.1
    [finding] = detect(Study("s", [_range_run(loss, lrs)]))
    assert finding.severity.value == "warning" and "ended before the loss blew up" in finding.title
    assert finding.evidence["blowup_lr"] is None and finding.evidence["lr_max"] >= 0.05


def test_a_range_where_the_loss_never_falls_says_so():
    lrs = np.geomspace(1e-7, 1e-4, 200)
    loss = 1.4 * np.exp(0.02 * np.random.default_rng(0).standard_normal(200))
    [finding] = detect(Study("s", [_range_run(loss, lrs)]))
    assert finding.severity.value == "warning" and "never fell" in finding.title
    assert finding.recommendation is None


@pytest.mark.parametrize("scale", [1e-4, 1e4])
def test_scale_free(scale):
    lrs = np.geomspace(1e-5, 10, 300)
    loss = (1.4 / (1 + lrs / 1e-2) + 0.05 + (lrs / 0.5) ** 3) * np.exp(0.1 * np.random.default_rng(1).standard_normal(300))
    [base] = detect(Study("s", [_range_run(loss, lrs)]))
    [scaled] = detect(Study("s", [_range_run(loss * scale, lrs)]))
    assert scaled.evidence["lr_max"] == base.evidence["lr_max"]
    assert scaled.evidence["blowup_lr"] == base.evidence["blowup_lr"]


def test_nan_at_the_top_of_the_range_is_the_blowup():
    lrs = np.geomspace(1e-5, 10, 300)
    loss = 1.4 / (1 + lrs / 1e-2) + 0.05
    loss[250:] = np.nan
    [finding] = detect(Study("s", [_range_run(loss, lrs)]))
    assert finding.evidence["blowup_lr"] <= lrs[250] * 1.01


def test_edge_cases_warn_instead_of_guessing():
    [no_lr] = detect(Study("s", [make_run("r", decaying(), None, role="lr_range")]))
    assert "without an lr column" in no_lr.title
    [short] = detect(Study("s", [_range_run([1.0] * 5, np.geomspace(1e-4, 1, 5))]))
    assert "too short" in short.title
    [narrow] = detect(Study("s", [_range_run(decaying(), np.linspace(0.1, 0.2, 300))]))
    assert "too little" in narrow.title
    [nan_first] = detect(Study("s", [_range_run([np.nan] * 300, np.geomspace(1e-5, 10, 300))]))
    assert "too short" in nan_first.title


def test_skipped_without_a_range_test_and_quiet_for_a_sweep_whose_lr_grows_by_warmup():
    sweep = Study("s", [make_run("a", decaying(), 0.1), make_run("b", decaying(), 0.3)])
    assert check.CHECK.why_skipped(sweep) == "no run with role lr_range"
    warm = make_run("w", decaying(), 0.1)
    warm.steps = warm.steps.assign(lr=np.minimum(1, np.arange(300) / 30) * 0.1)
    assert check.CHECK.why_skipped(Study("s", [warm])) is not None



@pytest.mark.parametrize("name", POSITIVE)
def test_every_corpus_case_labelled_with_it_gets_a_finding(corpus, name):
    assert detect(corpus.study(name))


@pytest.mark.parametrize("name", NEGATIVE)
def test_quiet_on_every_corpus_case_that_forbids_it(corpus, name):
    assert not detect(corpus.study(name))


def test_a_very_noisy_curve_needs_a_rise_beyond_its_own_noise():
    """Minibatch noise of e^+-1 on a range that falls and then stays flat: no blow-up is invented."""
    lrs = np.geomspace(1e-5, 0.1, 300)
    clean = 1.4 / (1 + lrs / 1e-3) + 0.1
    spurious = {True: 0, False: 0}
    for seed in range(8):
        noisy = clean * np.exp(np.random.default_rng(seed).standard_normal(300))
        for use_noise in (True, False):
            config = check.Config() if use_noise else check.Config(noise_z=0.0)
            result = check.analyse(np.arange(300), lrs, noisy, config)
            spurious[use_noise] += result.blowup_lr is not None
    assert spurious[True] == 0
    assert spurious[False] > 0  # a fixed 2x rise alone is fooled by this noise
