"""The shared instability detector on real small training runs and on edge cases."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import pytest

from diagnose import instability, rolling, signal
from diagnose.instability import find_instability, noise_scale, run_instability
from diagnose.model import Run

torch = pytest.importorskip("torch")
from corpus import training  # noqa: E402  (needs torch)


class _Losses:
    """Collects what a training loop reports, to feed the detector arrays directly."""

    def __init__(self):
        self.loss: list[float] = []

    def step(self, loss, optimizer, grad_norm=None, clip_norm=None, step=None):
        self.loss.append(loss)

    def eval(self, split, loss):
        pass


@lru_cache(maxsize=None)
def losses(**kwargs) -> np.ndarray:
    collected = _Losses()
    training.mlp_regression(collected, **kwargs)
    return np.array(collected.loss)


def events_of(loss, every: int = 1):
    return find_instability(np.arange(len(loss)) * every, loss)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(lr=0.003, batch_size=4, momentum=0.9, seed=0),
        dict(lr=0.003, batch_size=4, momentum=0.9, seed=1),
        dict(lr=0.03, batch_size=4, momentum=0.0, seed=2),
        dict(lr=0.03, batch_size=32, momentum=0.9, seed=0),
        dict(lr=0.01, optimizer="adam", batch_size=32, seed=0),
    ],
    ids=["bs4-s0", "bs4-s1", "bs4-nomomentum", "bs32", "adam"],
)
def test_healthy_runs_have_no_event_even_at_batch_size_4(kwargs):
    loss = losses(**kwargs)
    assert np.isfinite(loss).all() and np.median(loss[-50:]) < np.median(loss[:20])  # it trained
    assert events_of(loss) == []


def test_an_outlier_batch_is_one_event_that_starts_there_and_recovers():
    loss = losses(lr=0.01, outliers=((300, 5.0),), steps=800)
    [event] = events_of(loss)
    assert event.start_step == 300
    assert 300 < event.end_step < 400
    assert event.recovered and event.end_step <= event.recovery_step < 450
    assert event.ratio > 5 and event.size_noise > 8
    assert not event.nonfinite
    assert event.baseline_loss < np.median(loss[250:300]) < event.peak_loss


def test_two_outlier_batches_are_two_events():
    loss = losses(lr=0.01, outliers=((200, 10.0), (500, 10.0)), steps=800)
    assert [e.start_step for e in events_of(loss)] == [200, 500]


def test_a_kick_the_run_does_not_come_back_from_is_not_recovered():
    loss = losses(lr=0.03, outliers=((300, 30.0),), steps=600)
    [event] = events_of(loss)
    assert event.start_step == 300 and not event.recovered and event.recovery_step is None
    assert event.end_step >= 590


def test_a_run_that_diverges_ends_in_a_nonfinite_event():
    loss = losses(lr=0.2, steps=300)
    assert not np.isfinite(loss[-1])
    last = events_of(loss)[-1]
    assert last.nonfinite and not last.recovered and last.end_step == 299
    assert last.start_step <= int(np.argmax(~np.isfinite(loss)))


@pytest.mark.parametrize("factor", [1e-4, 1e4])
def test_scale_free_the_same_events_at_losses_of_1e_minus_4_and_1e4(factor):
    loss = losses(lr=0.01, outliers=((300, 5.0),), steps=800)
    original = [(e.start_step, e.end_step, e.recovery_step) for e in events_of(loss)]
    scaled = events_of(loss * factor)
    assert [(e.start_step, e.end_step, e.recovery_step) for e in scaled] == original
    assert scaled[0].ratio == pytest.approx(events_of(loss)[0].ratio)


def test_logged_every_5_steps_the_outlier_is_still_one_event():
    loss = losses(lr=0.01, outliers=((300, 5.0),), steps=800)
    [event] = find_instability(np.arange(0, 800, 5), loss[::5])
    assert 295 <= event.start_step <= 305 and event.recovered


def test_losses_averaged_over_10_steps_as_hf_logs_them():
    healthy = losses(lr=0.003, batch_size=4, steps=3000, log_every=10)
    assert events_of(healthy, every=10) == []
    spiked = losses(lr=0.01, outliers=((1500, 10.0),), steps=3000, log_every=10)
    [event] = events_of(spiked, every=10)
    assert 1490 <= event.start_step <= 1510


def test_negative_losses_are_judged_on_the_loss_itself():
    loss = losses(lr=0.01, outliers=((300, 5.0),), steps=800) - 1.0
    [event] = events_of(loss)
    assert event.start_step == 300 and event.ratio is None


def test_edge_cases():
    assert find_instability([], []) == []
    assert find_instability([0], [1.0]) == []
    assert find_instability(np.arange(500), np.full(500, 0.7)) == []
    quantized = np.round(0.5 + 0.004 * np.random.default_rng(0).standard_normal(500), 2)
    assert find_instability(np.arange(500), quantized) == []
    loss = losses(lr=0.03, batch_size=32, momentum=0.9, seed=0).copy()
    loss[0] = np.nan
    [event] = events_of(loss)
    assert event.start_step == 0 and event.nonfinite and event.recovered and event.recovery_step <= 3


def test_run_instability_drops_values_that_were_not_logged_and_keeps_written_nans():
    loss = losses(lr=0.03, batch_size=32, momentum=0.9, seed=0).copy()
    steps = np.arange(len(loss))
    loss[::7] = np.nan  # not logged
    run = Run(name="r", study="s", source=None, steps=pd.DataFrame({"step": steps, "loss": loss}))
    assert run_instability(run) == []
    assert run_instability(run) is run_instability(run)  # cached
    written = Run(
        name="w", study="s", source=None, steps=pd.DataFrame({"step": steps, "loss": loss}), nan_steps={"loss": steps[::7][-1:]}
    )
    [event] = run_instability(written)
    assert event.nonfinite and event.start_step == steps[::7][-1]


def test_noise_scale_is_scale_free():
    loss = losses(lr=0.003, batch_size=4, momentum=0.9, seed=0)
    assert noise_scale(loss) == pytest.approx(noise_scale(loss * 1e4))
    assert noise_scale(loss) > 2 * noise_scale(losses(lr=0.03, batch_size=32, momentum=0.9, seed=0))


def _series(rng, n):
    x = rng.normal(size=n).cumsum()
    x[rng.random(n) < 0.05] = np.nan
    x[int(n * 0.8) :] = np.nan if n % 2 else x[int(n * 0.8) :]
    return np.round(x, 1) if n % 3 == 0 else x


@pytest.mark.parametrize("clean", [False, True])
def test_one_rolling_median_gives_the_centered_and_the_trailing_medians_bit_for_bit(clean):
    rng = np.random.default_rng(0)
    for n in (9, 10, 50, 333, 1000, 2401):
        x = _series(rng, n)
        if clean:  # no missing point
            x = np.round(rng.normal(size=n).cumsum(), 1 if n % 3 == 0 else 12)
        for w in sorted({1, 2, 3, 15, 45, n // 4 | 1, n - 1, n} & set(range(1, n + 1))):
            for min_periods in sorted({1, min(3, w), max(1, w // 3), w}):
                level, trailing = instability._level_and_trailing(x, w, min_periods, clean)
                np.testing.assert_array_equal(level, instability._filled(rolling.median(x, w, center=True), x))
                np.testing.assert_array_equal(trailing, rolling.median(x, w, min_periods=min_periods))


def test_block_medians_are_numpys():
    rng = np.random.default_rng(1)
    for size in (1, 2, 3, 10, 11):
        rows = rng.normal(size=(500, size))
        rows[rng.random(rows.shape) < 0.02] = np.nan
        rows[rng.random(rows.shape) < 0.02] = np.inf
        with np.errstate(invalid="ignore"):
            np.testing.assert_array_equal(signal.row_medians(rows), np.median(rows, axis=1))
