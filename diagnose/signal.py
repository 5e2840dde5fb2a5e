"""Robust, scale-free series primitives the checks share.

Losses range from 1e-4 to 1e4 and are logged every step or every few hundred,
so everything here works on ratios (log space) and on windows sized as a
fraction of the run, never on absolute numbers or fixed step counts.
"""

from __future__ import annotations

import math

import numpy as np

from . import rolling

# MAD of a normal sample times this is its standard deviation.
MAD_TO_SIGMA = 1.4826


def window(n: int, fraction: float = 0.02, minimum: int = 3, maximum: int | None = None) -> int:
    """An odd window of ``fraction`` of ``n`` points, at least ``minimum``."""
    size = max(minimum, int(round(n * fraction)))
    if maximum is not None:
        size = min(size, maximum)
    return size | 1


def smooth(values: np.ndarray, size: int) -> np.ndarray:
    """Centered rolling median: follows the trend, ignores single-step spikes."""
    return rolling.median(values, size, center=True, min_periods=1)


def robust_scale(values: np.ndarray) -> float:
    """Standard deviation estimated from the median absolute deviation."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan")
    return float(MAD_TO_SIGMA * np.median(np.abs(values - np.median(values))))


def segments(mask: np.ndarray, gap: int = 0) -> list[tuple[int, int]]:
    """``[start, end]`` index pairs of the runs of True in ``mask``; runs ``gap`` apart merge."""
    indices = np.flatnonzero(mask)
    if indices.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(indices) > gap + 1)
    starts = np.concatenate(([indices[0]], indices[breaks + 1]))
    ends = np.concatenate((indices[breaks], [indices[-1]]))
    return [(int(s), int(e)) for s, e in zip(starts, ends)]


def row_medians(rows: np.ndarray) -> np.ndarray:
    """``np.median(rows, axis=1)``: its mean of the middle values and its NaN for a row holding one, but the rows
    sorted (short rows sort 3-4x faster than numpy partitions them on several indices)."""
    size = rows.shape[1]
    ordered = np.sort(rows, axis=1)  # NaN last, as in np.median's partition
    # np.mean's numbers: its sum starts at 0.0 (so a -0.0 median is 0.0), then divides by the count
    level = ordered[:, (size - 1) // 2] + 0.0
    if size % 2 == 0:
        level += ordered[:, size // 2]
        level /= 2
    level[np.isnan(ordered[:, -1])] = np.nan
    return level


def median(values: np.ndarray, to_x=None) -> np.ndarray:
    """``np.median(to_x(values))`` over the last axis of values without NaN, ``to_x`` monotone (non-decreasing),
    from one partition at the upper middle value (numpy's median partitions at two or three indices, ~5x
    slower): the lower middle is the largest before it. ``to_x`` is taken of the middle values only; their
    mean is numpy's, (a + b) / 2.
    """
    to_x = to_x or (lambda middle: middle)
    middle = values.shape[-1] // 2
    # the array's own partition and numpy's maximum: np.partition and .max() are Python wrappers (~5 us a call)
    part = values.copy()
    part.partition(middle, axis=-1)
    if values.shape[-1] % 2:
        return to_x(part[..., middle])
    return (to_x(np.maximum.reduce(part[..., :middle], axis=-1)) + to_x(part[..., middle])) / 2


def percentile(values: np.ndarray, q: float) -> np.float64:
    """``np.percentile(values, q)`` of 1-d float64 values, its wrappers left out (~40 us a call on a short array):
    numpy's partition at the kth it takes (the values at those places, and which of tied 0.0 and -0.0 is where),
    then its interpolation (``_lerp``), whose float arithmetic Python's is. The values are first partitioned at the
    lower index, which makes numpy's partition quick on a long run (the same values, so the same number)."""
    n = len(values)
    # numpy's error, its NaN, or its arithmetic in another dtype
    if not n or not 0 <= q <= 100 or values.dtype != np.float64 or np.isnan(np.maximum.reduce(values)):
        return np.percentile(values, q)
    index = (n - 1) * (q / 100)
    below = math.floor(index)
    part = np.partition(values, below)
    if below >= n - 1:  # numpy takes the last value for both, and a weight past 1
        below, above, weight = -1, -1, index + 1
    else:
        above, weight = below + 1, index - below
    part.partition(sorted({0, -1, below, above}))
    low, high = float(part[below]), float(part[above])
    step = high - low
    return np.float64(high - step * (1 - weight) if weight >= 0.5 else low + step * weight)
