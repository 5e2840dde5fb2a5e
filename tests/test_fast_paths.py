"""Speed-ups that must give the very same numbers as the straightforward code they replace."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from diagnose.checks.grad_norm_outliers import _all_below_floor, _block_floors, _median_floor, _rolling_medians
from diagnose.checks.underfitting import _mean, _width
from diagnose.signal import median


@pytest.mark.parametrize("n", [20, 21, 22, 40, 1001, 1002, 20_000])
@pytest.mark.parametrize("size", [21, 101, 1001])
def test_one_rolling_pass_gives_both_grad_norm_levels(n, size):
    x = np.log10(np.abs(np.random.default_rng(n + size).standard_cauchy(n)) + 1e-3)
    centered, trailing = _rolling_medians(x, size)
    assert np.array_equal(centered, pd.Series(x).rolling(size, center=True, min_periods=1).median().to_numpy())
    assert np.array_equal(trailing, pd.Series(x).shift(1).rolling(size, min_periods=5).median().to_numpy(),
                          equal_nan=True)


@pytest.mark.parametrize("n", [20, 21, 30, 400, 1001, 1002, 1503, 20_000, 100_000])
@pytest.mark.parametrize("ratio", [1.5, 3.0, 4.95])
def test_each_stretchs_largest_value_tells_whether_all_are_below_the_floor(n, ratio):
    rng = np.random.default_rng(n)
    size = min(max(21, int(n * 0.05)), 1001) | 1
    for spread in (0.05, 0.2, 1.0):
        x = 10 ** (spread * rng.standard_normal(n))
        assert _all_below_floor(x, size, ratio) == bool((x < _median_floor(x, size) * ratio).all())
        x[rng.integers(n)] *= 10  # one outlier
        assert _all_below_floor(x, size, ratio) == bool((x < _median_floor(x, size) * ratio).all())
        assert (_block_floors(x, size, bound=True) <= _block_floors(x, size)).all()


@pytest.mark.parametrize("shape", [(1,), (2,), (5,), (10_000,), (10_001,), (0, 4), (3, 1), (30, 666), (30, 667)])
@pytest.mark.parametrize("values", ["normal", "ties", "signed_zeros", "integers"])
def test_median_from_one_partition_is_numpys(shape, values):
    rng = np.random.default_rng(sum(shape))
    x = {
        "normal": rng.normal(size=shape),
        "ties": np.round(rng.normal(size=shape)),
        "signed_zeros": rng.choice([-0.0, 0.0, 1e-300, -1.0], size=shape),
        "integers": rng.integers(0, 5, size=shape),
    }[values]
    # equal values; which of tied -0.0 and 0.0 is the median depends on the partition, in numpy's too
    assert np.array_equal(median(x), np.median(x, axis=-1))
    if values != "signed_zeros":  # of the logs, taken of the middle values only
        positive = np.abs(x) + 0.5
        assert np.array_equal(median(positive, np.log10), np.median(np.log10(positive), axis=-1))


@pytest.mark.parametrize("shape", [(1,), (7,), (30,), (0, 7), (20, 7), (10, 6)])
def test_underfittings_mean_and_width_are_numpys(shape):
    rng = np.random.default_rng(sum(shape))
    steps = np.sort(rng.integers(0, 10**12, size=shape), axis=-1)
    assert np.array_equal(_mean(steps, dtype=float), steps.mean(axis=-1))
    x = rng.normal(size=shape) * 10.0 ** rng.integers(-5, 5, size=shape)
    assert np.array_equal(_mean(x), x.mean(axis=-1))
    if x.ndim == 1:
        assert _width(x) == float(np.ptp(x)) and _width(steps) == float(np.ptp(steps))
