"""diagnose.rolling gives pandas' rolling medians bit for bit: random series with NaN and inf, every window parity and min_periods."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from diagnose import rolling

# Few distinct values too, so that windows hold ties and even counts average two equal middles.
values = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, 1.0, -2.5, np.nan, np.inf, -np.inf]),
)
series = hnp.arrays(np.float64, st.integers(0, 60), elements=values)


@settings(max_examples=400, deadline=None)
@given(series, st.integers(1, 70), st.data(), st.booleans())
def test_median_is_pandas_rolling_median(x, window, data, center):
    min_periods = data.draw(st.integers(1, window))
    expected = pd.Series(x).rolling(window, center=center, min_periods=min_periods).median().to_numpy()
    got = rolling.median(x, window, center=center, min_periods=min_periods)
    np.testing.assert_array_equal(got, expected)


def test_median_defaults_to_full_windows_and_long_series():
    x = np.random.default_rng(0).normal(size=5000)
    x[::97] = np.nan
    for window in (4, 1001):
        for center in (False, True):
            expected = pd.Series(x).rolling(window, center=center).median().to_numpy()
            np.testing.assert_array_equal(rolling.median(x, window, center=center), expected)


def test_median_rejects_min_periods_outside_the_window():
    with pytest.raises(ValueError, match="min_periods 6"):
        rolling.median(np.zeros(10), 5, min_periods=6)


@given(series)
def test_fills_are_pandas_fills(x):
    np.testing.assert_array_equal(rolling.ffill(x), pd.Series(x).ffill().to_numpy())
    np.testing.assert_array_equal(rolling.bfill(x), pd.Series(x).bfill().to_numpy())
