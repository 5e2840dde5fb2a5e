"""The bounds that spare the instability detector most of its rolling medians: they hold, and they change no event."""

from __future__ import annotations

import numpy as np
import pytest

from diagnose import instability, rolling
from diagnose.instability import find_instability
from diagnose.readers import read_root


def _series(rng, n: int, broken_from: int) -> np.ndarray:
    """A noisy decaying log-loss with ties (rounded) and slow wander, broken (NaN) from ``broken_from`` on."""
    t = np.arange(n)
    x = np.log10(2 * np.exp(-t / (n / 4)) + 0.3) + rng.normal(0, rng.uniform(0.001, 0.05), n)
    x += np.cumsum(rng.normal(0, 0.002, n))
    x = np.round(x, int(rng.integers(2, 5)))
    x[broken_from:] = np.nan
    return x


def _best(x: np.ndarray, w: int) -> np.ndarray:
    """The detector's best level at scale w (reference window 3w), by its definition."""
    trailing = rolling.median(x, 3 * w, min_periods=w)
    return instability._running_min(instability._trailing_filled(trailing, x, w))


CASES = [(n, tail) for n in (40, 137, 1000, 4001) for tail in (1.0, 0.9, 0.5)]


@pytest.mark.parametrize("n,tail", CASES)
def test_a_centered_median_is_at_most_the_largest_median_of_its_thirds(n, tail):
    rng = np.random.default_rng(n)
    end = int(n * tail)
    x = _series(rng, n, end)
    for third in (5, 15, 45):
        w = 3 * third
        if w > n:
            break
        ceiling = instability._ceiling(instability._median(x, third), third, end)
        level = instability._median(x, w)
        checked = slice(w // 2, min(end, n - w // 2))  # full windows, before the broken tail
        # (no full window before the tail: no level, nothing to bound)
        assert (np.isnan(level[checked]) | (ceiling[checked] >= level[checked])).all()


@pytest.mark.parametrize("n,tail", CASES)
def test_the_best_level_is_at_least_a_smaller_scales(n, tail):
    rng = np.random.default_rng(n + 1)
    end = int(n * tail)
    x = _series(rng, n, end)
    for small, large in [(5, 15), (5, 45), (15, 45), (15, 135), (45, 405)]:
        if large > n:
            break
        floor = instability._floor(_best(x, small), x, small)
        assert (floor[:end] <= _best(x, large)[:end]).all()


def _useless_bounds(monkeypatch):
    monkeypatch.setattr(instability, "_ceiling", lambda level, third, end: np.full(len(level), np.inf))
    monkeypatch.setattr(instability, "_floor", lambda best, x, w: np.full(len(best), -np.inf))


def _benchmark_like(rng, n: int) -> np.ndarray:
    """benchmarks/analyzer_scale.py's loss: decaying, 5% lognormal noise; a spike or a broken tail."""
    t = np.arange(n)
    return (2.3 * np.exp(-t / (n / 5)) + 0.2) * np.exp(rng.normal(0, 0.05, n))


def _loss_series(shared):
    rng = np.random.default_rng(7)
    yield "benchmark", _benchmark_like(rng, 10_000)
    spiked = _benchmark_like(rng, 10_000)
    spiked[5000:5050] *= 8
    yield "spike", spiked
    diverged = _benchmark_like(rng, 10_000)
    diverged[8000:] = np.inf
    yield "broken tail", diverged
    loaded = read_root(shared / "realworld")
    for run in loaded.runs:
        steps, loss = instability.run_loss(run)
        if len(loss) <= instability.LONG_RUN_POINTS:
            yield run.key, loss


def test_the_bounds_change_no_event_on_real_and_benchmark_losses(shared, monkeypatch):
    series = list(_loss_series(shared))
    configs = [instability.DEFAULT, instability.InstabilityConfig(z=4.0, min_ratio=1.01)]
    found = [find_instability(np.arange(len(loss)), loss, config) for _, loss in series for config in configs]
    assert any(found) and not all(found)
    _useless_bounds(monkeypatch)
    exact = [find_instability(np.arange(len(loss)), loss, config) for _, loss in series for config in configs]
    assert found == exact
