"""Speed-ups that must give the very same numbers as the straightforward code they replace."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from diagnose.checks.grad_norm_outliers import _rolling_medians


@pytest.mark.parametrize("n", [20, 21, 22, 40, 1001, 1002, 20_000])
@pytest.mark.parametrize("size", [21, 101, 1001])
def test_one_rolling_pass_gives_both_grad_norm_levels(n, size):
    x = np.log10(np.abs(np.random.default_rng(n + size).standard_cauchy(n)) + 1e-3)
    centered, trailing = _rolling_medians(x, size)
    assert np.array_equal(centered, pd.Series(x).rolling(size, center=True, min_periods=1).median().to_numpy())
    assert np.array_equal(trailing, pd.Series(x).shift(1).rolling(size, min_periods=5).median().to_numpy(),
                          equal_nan=True)
