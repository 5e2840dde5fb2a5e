"""signal.percentile gives np.percentile's numbers to the bit (of the values partitioned at the lower index, as it
was before: which of tied 0.0 and -0.0 is taken)."""

import numpy as np
import pytest


from diagnose.signal import percentile


def _same(got, expected) -> bool:
    return type(got) is type(expected) and (np.array_equal(got, expected, equal_nan=True)
                                            and np.signbit(got) == np.signbit(expected))


@pytest.mark.parametrize("q", [0, 1, 10, 33.3, 50, 90, 95, 99, 99.9, 100, 90.0])
def test_random_arrays(q):
    rng = np.random.default_rng(int(q * 10))
    for n in list(range(1, 60)) + [97, 100, 101, 1000, 1001]:
        for values in (rng.lognormal(size=n), rng.normal(size=n), rng.integers(0, 4, size=n).astype(float)):
            assert _same(percentile(values, q), np.percentile(values, q)), (n, q)


def test_special_values():
    rng = np.random.default_rng(7)
    pool = np.array([0.0, -0.0, 1.0, -1.0, 2.5, np.inf, -np.inf, np.nan, 1e308, -1e308, 5e-324])
    for _ in range(5000):
        values = rng.choice(pool, size=int(rng.integers(1, 12)))
        for q in (0, 50, 90, 100):
            before = np.partition(values, int(q / 100 * (len(values) - 1)))
            assert _same(percentile(values, q), np.percentile(before, q)), (values, q)


def test_other_dtypes():
    values = np.random.default_rng(3).lognormal(size=101)
    for array in (values.astype(np.float32), (values * 100).astype(np.int64)):
        assert _same(percentile(array, 90), np.percentile(array, 90))


def test_input_untouched_and_errors():
    values = np.array([3.0, 1.0, 2.0])
    percentile(values, 90)
    assert values.tolist() == [3.0, 1.0, 2.0]
    with pytest.raises(ValueError):
        percentile(values, 101)
    with pytest.raises(IndexError):
        percentile(np.array([]), 90)
