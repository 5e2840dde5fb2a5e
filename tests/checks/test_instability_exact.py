"""Every shortcut of the instability detector (bounds that skip a scale, sigma at a few points only) finds
exactly the events of the straightforward computation, on many random and generated series."""

from __future__ import annotations

import numpy as np
import pytest

from diagnose import instability, rolling, signal
from diagnose.instability import InstabilityConfig, find_instability


def _straightforward(monkeypatch):
    """Every scale smoothed and compared in full, sigma computed as a whole."""
    monkeypatch.setattr(instability, "_ceiling", lambda level, third, end: np.full(len(level), np.inf))
    monkeypatch.setattr(instability, "_floor", lambda best, x, w: np.full(len(best), -np.inf))
    monkeypatch.setattr(instability, "_block_ceiling", lambda highs, n, *rest: np.full(n, np.inf))
    monkeypatch.setattr(instability, "_block_floor", lambda lows, n, *rest: np.full(n, -np.inf))
    monkeypatch.setattr(instability, "_FEW_POINTS", -1)
    monkeypatch.setattr(instability, "_noise_under", lambda padded, points, size: None)


def _series(rng: np.random.Generator, case: int) -> np.ndarray:
    """A training loss: decaying or flat, noisy (white, wandering, heavy-tailed or quantized), with spikes,
    steps up, broken points or a broken tail; sometimes non-positive (the detector then works on the loss)."""
    n = int(rng.choice([8, 9, 13, 30, 61, 137, 400, 1000, 3001, 9000]))
    t = np.arange(n)
    loss = rng.uniform(0.1, 3) * np.exp(-t / (n * rng.uniform(0.1, 2))) + rng.uniform(0.01, 1)
    noise = 10 ** rng.uniform(-3, -0.5)
    kind = case % 4
    if kind == 0:
        loss = loss * np.exp(rng.normal(0, noise, n))
    elif kind == 1:
        loss = loss * np.exp(rng.standard_t(2, n) * noise / 3 + np.cumsum(rng.normal(0, noise / 30, n)))
    elif kind == 2:
        loss = np.round(loss * np.exp(rng.normal(0, noise, n)), int(rng.integers(1, 4)))
    else:
        loss = loss + rng.normal(0, noise, n) - (rng.uniform(0, 1.5) if rng.random() < 0.5 else 0)
    for _ in range(int(rng.integers(0, 4))):  # spikes and plateaus up
        at, length = int(rng.integers(0, n)), int(rng.integers(1, max(2, n // 5)))
        loss[at : at + length] *= rng.uniform(1.02, 10)
    if rng.random() < 0.5:  # a slow climb, for the long scales alone to see
        at, length = int(rng.integers(0, n)), int(rng.integers(n // 20 + 1, n // 2 + 2))
        climb = np.linspace(0, np.log(rng.uniform(1.03, 1.5)), length)[: n - at]
        loss[at : at + len(climb)] *= np.exp(climb)
        loss[at + len(climb) :] *= np.exp(climb[-1] * rng.uniform(0, 1))
    if rng.random() < 0.2:  # a broken tail
        loss[int(rng.integers(0, n)) :] = rng.choice([np.nan, np.inf, -np.inf])
    if rng.random() < 0.15:  # broken points anywhere
        loss[rng.random(n) < rng.uniform(0, 0.2)] = rng.choice([np.nan, np.inf])
    return loss


CONFIGS = [
    instability.DEFAULT,
    InstabilityConfig(z=4.0, min_ratio=1.01),
    InstabilityConfig(z=12.0, min_ratio=1.2, reference_points=10, noise_fraction=0.02),
    InstabilityConfig(z=0.0, min_ratio=1.0),
]


@pytest.mark.parametrize("chunk", range(4))
def test_the_shortcuts_change_no_event(chunk, monkeypatch):
    if chunk % 2:  # the shortcuts on series of any length, not only the long ones they pay on
        monkeypatch.setattr(instability, "SHORTCUTS_FROM", 0)
    rng = np.random.default_rng(1000 + chunk)
    cases = []
    for case in range(150):
        loss = _series(rng, case)
        steps = np.cumsum(rng.integers(1, 4, len(loss)))  # steps with gaps
        cases.append((steps, loss, CONFIGS[case % len(CONFIGS)]))
    found = [find_instability(steps, loss, config) for steps, loss, config in cases]
    assert sum(map(bool, found)) > 20 and not all(found)
    _straightforward(monkeypatch)
    exact = [find_instability(steps, loss, config) for steps, loss, config in cases]
    assert repr(found) == repr(exact)  # NaN fields too


def test_the_shortcuts_change_no_event_on_long_runs(monkeypatch):
    """Runs long enough to be seen as block medians (the generated 100k-step roots)."""
    rng = np.random.default_rng(5)
    cases = []
    for case in range(6):
        n = 40_000 + 997 * case
        t = np.arange(n)
        loss = (2.3 * np.exp(-t / (n / 5)) + 0.2) * np.exp(rng.normal(0, 0.05, n))
        if case % 3 == 1:
            loss[n // 2 : n // 2 + 500] *= rng.uniform(1.1, 8)
        if case % 3 == 2:
            loss[int(n * 0.8) :] = np.nan
        cases.append((np.arange(n), loss))
    found = [instability._find_in_blocks(steps, loss, instability.DEFAULT) for steps, loss in cases]
    assert any(found) and not all(found)
    _straightforward(monkeypatch)
    assert repr(found) == repr([instability._find_in_blocks(steps, loss, instability.DEFAULT) for steps, loss in cases])


def test_sigma_at_a_few_points_is_sigma_bit_for_bit():
    rng = np.random.default_rng(3)
    for case in range(300):
        n = int(rng.integers(3, 700))
        x = rng.normal(0, 10.0 ** rng.integers(-4, 3), n) + np.where(rng.random(n) < 0.3, rng.choice([0.0, 0.5]), 0)
        x[rng.random(n) < rng.uniform(0, 0.9)] = np.nan
        finite = np.isfinite(x)
        if not finite.any():
            continue
        config = CONFIGS[case % len(CONFIGS)]
        parts = instability._noise_parts(x, finite, config)
        whole = instability._local_noise(x, finite, config)
        points = rng.integers(0, n, int(rng.integers(1, 40)))
        at = instability._local_noise_at(parts, points)
        if at is None:  # a window without any second difference: filled from its neighbours
            windows = rolling.median(parts[0], parts[1], center=True, min_periods=1)
            assert np.isnan(windows[points]).any()
        else:
            np.testing.assert_array_equal(at, whole[points])


@pytest.mark.parametrize("seed", range(3))
def test_the_block_bounds_hold(seed):
    """``_block_floor`` is at most the best level and ``_block_ceiling`` at least the level, for any block size
    and order statistic, with ties, steps and a broken tail; one-point blocks give them exactly."""
    rng = np.random.default_rng(seed)
    for case in range(120):
        n = int(rng.integers(20, 2500))
        t = np.arange(n)
        x = np.log10(np.exp(-t / rng.uniform(50, 3000)) + 0.2) + rng.normal(0, 10 ** rng.uniform(-4, -1), n)
        x[int(rng.integers(0, n)) :] += rng.uniform(-0.2, 0.2)  # a step
        if case % 3 == 0:
            x = np.round(x, int(rng.integers(1, 3)))
        end = int(rng.integers(n // 2, n + 1)) if case % 2 else n
        x[end:] = np.nan
        w = int(rng.integers(5, max(6, n // 3))) | 1
        window = 3 * w if rng.random() < 0.7 else int(rng.integers(w, 3 * w + 1))
        size = int(rng.integers(1, max(2, window // 4)))
        p = int(rng.integers(0, size))
        for size, p, min_periods in [(size, p, w), (1, 0, window)]:
            lows, highs = instability._block_orders(x, size, p)
            floor = instability._block_floor(lows, n, window, min_periods, size, p)
            trailing = rolling.median(x, window, min_periods=min_periods)
            best = instability._running_min(instability._trailing_filled(trailing, x, min_periods))
            assert (floor[:end] <= best[:end]).all()
            ceiling = instability._block_ceiling(highs, n, w, size, p, end)
            level = instability._median(x, w)
            checked = slice(w // 2, min(end, n - w // 2))
            assert (np.isnan(level[checked]) | (ceiling[checked] >= level[checked])).all()
        if window % 2:  # one-point blocks, full windows: the medians themselves
            np.testing.assert_array_equal(floor[:end], best[:end])
            full = checked.start + np.flatnonzero(~np.isnan(level[checked]))
            np.testing.assert_array_equal(ceiling[full], level[full])


def test_row_medians_are_numpys_bit_for_bit():
    """The detector's block medians: np.median's numbers, NaN, inf and the sign of a zero median included."""
    rng = np.random.default_rng(11)
    special = [0.0, -0.0, 1.5, 3.0, np.nan, np.inf, -np.inf, 1e308, -1e308, 5e-324]
    for case in range(600):
        shape = (int(rng.integers(1, 40)), int(rng.integers(1, 14)))
        if case % 2:
            rows = rng.choice(special, shape)
        else:
            rows = rng.normal(size=shape) * 10.0 ** rng.integers(-300, 300)
        with np.errstate(invalid="ignore", over="ignore"):
            expected, got = np.median(rows, axis=1), signal.row_medians(rows)
        np.testing.assert_array_equal(got, expected)
        assert (np.signbit(got) == np.signbit(expected)).all()


def test_the_three_and_five_point_levels_are_the_rolling_medians():
    rng = np.random.default_rng(13)
    for case in range(500):
        n = int(rng.integers(1, 60))
        x = rng.choice([0.1, 0.2, -1.0, 3.0], n) if case % 2 else rng.normal(size=n)
        x[rng.random(n) < rng.uniform(0, 0.3)] = np.nan
        if case % 7 == 0:
            x[rng.random(n) < 0.3] = rng.choice([0.0, -0.0, np.inf])  # the slow path's cases
        for w in (3, 5):
            expected = instability._filled(rolling.median(x, w, center=True), x)
            np.testing.assert_array_equal(instability._median(x, w), expected)
            assert (np.signbit(instability._median(x, w)) == np.signbit(expected)).all()


def test_the_shortcuts_change_no_event_on_bumps_near_the_bar(monkeypatch):
    """Short bumps about as high as the smallest scale's noise bar (8 x 1.25 sigma / sqrt(5)): where sigma at a few
    points decides whether a scale is smoothed at all."""
    monkeypatch.setattr(instability, "SHORTCUTS_FROM", 0)
    rng = np.random.default_rng(17)
    cases = []
    for case in range(200):
        n, noise = int(rng.choice([300, 2000, 9000])), rng.uniform(0.005, 0.02)
        x = np.log10(np.exp(-np.arange(n) / (n / 3)) + 0.5) + rng.normal(0, noise, n)
        for _ in range(int(rng.integers(1, 4))):
            at, width = int(rng.integers(0, n - 20)), int(rng.integers(2, 16))
            x[at : at + width] += rng.uniform(0.6, 1.6) * 8 * 1.2533 * noise / np.sqrt(5)
        cases.append(10**x)
    found = [find_instability(np.arange(len(loss)), loss) for loss in cases]
    assert sum(map(bool, found)) > 20 and not all(found)
    _straightforward(monkeypatch)
    assert repr(found) == repr([find_instability(np.arange(len(loss)), loss) for loss in cases])


def test_sigma_from_a_few_windows_is_at_most_sigma():
    """``_noise_under`` (short clean series): at most sigma at every point, sigma's median itself where the window
    holds an odd count (full, or reaching one end); with ties, zero differences (a constant or quantized stretch)
    and points at both ends."""
    rng = np.random.default_rng(19)
    for case in range(300):
        n = int(rng.integers(3, 700))
        x = np.cumsum(rng.normal(0, 10.0 ** rng.integers(-4, 1), n)) * rng.choice([1.0, 0.0], p=[0.9, 0.1])
        if case % 3 == 0:
            x = np.round(x, int(rng.integers(0, 3)))
        finite = np.ones(n, dtype=bool)
        config = CONFIGS[case % len(CONFIGS)]
        size = instability._noise_window(n, config)
        d2, _, floor = instability._noise_parts(x, finite, config)
        medians = rolling.median(d2, size, center=True, min_periods=1) * instability._D2_TO_SIGMA
        points = np.unique(rng.integers(0, n, int(rng.integers(1, 40))))
        under = instability._noise_under(instability._differences_padded(x, size), points, size)
        assert (under <= instability._local_noise(x, finite, config, clean=True)[points]).all()
        assert (under <= medians[points]).all()
        start, end = np.maximum(size // 2 + 1 - points, 0), np.maximum(points + size // 2 + 2 - n, 0)  # missing
        odd = ((size - start - end) % 2 == 1) & ((start == 0) | (end == 0))  # windows holding an odd count at one end
        np.testing.assert_array_equal(under[odd], medians[points[odd]])


def test_the_clean_helpers_are_the_general_ones():
    """The helpers' shortcuts for a series without a missing point (``clean``) give the general path's numbers."""
    rng = np.random.default_rng(23)
    for case in range(200):
        n = int(rng.integers(1, 300))
        x = np.cumsum(rng.normal(0, 0.1, n))
        if case % 4 == 0:
            x = np.round(x, 1) + 0.0  # ties and zeros (no -0.0: a clean series is a log10)
        for w in (3, 5, 15, 45):
            np.testing.assert_array_equal(instability._median(x, w, clean=True), instability._median(x, w))
            for min_periods in (3, w):
                trailing = rolling.median(x, 3 * w, min_periods=min(min_periods, 3 * w))
                general = instability._running_min(instability._trailing_filled(trailing.copy(), x, min_periods))
                clean = instability._running_min(instability._trailing_filled(trailing, x, min_periods, True), True)
                np.testing.assert_array_equal(clean, general)
        np.testing.assert_array_equal(
            instability._local_noise(x, np.ones(n, dtype=bool), CONFIGS[case % 4], clean=True),
            instability._local_noise(x, np.ones(n, dtype=bool), CONFIGS[case % 4]),
        )
