"""Periods where the loss goes up instead of down, measured against the run's own noise.

The one detector that every instability check shares (early_instability,
loss_spike, unstable_above_best_lr, short_run_instability), so that they all
agree on what an unstable period is.

Public API::

    find_instability(steps, loss, config=InstabilityConfig()) -> list[InstabilityEvent]
    run_instability(run, config=InstabilityConfig()) -> list[InstabilityEvent]   # memoised on the run;
                                                  # runs over 32k points: in blocks of <= 10k medians
    memoised(run) / remember(run, found)          # the memo, for the run cache
    noise_scale(loss) -> float        # the per-point noise of a loss series, in the detector's units

``InstabilityEvent`` fields: ``start_step``, ``end_step`` (the unstable
period to shade), ``peak_step``, ``baseline_loss`` (the best smoothed loss
before the event), ``peak_loss`` (the smoothed loss at its peak; inf when the
run went non-finite), ``max_loss`` (the largest raw loss in the period),
``size_noise`` (rise in units of the per-point noise), ``ratio`` (peak /
baseline; None when the loss is not positive), ``recovered``,
``recovery_step`` (first step back at the baseline, or None), ``nonfinite``
(the period ends in NaN/inf). ``to_dict()`` gives the JSON evidence.

Algorithm (scale-free: works on log10 of the loss whenever every finite loss
is positive, else on the loss itself):

1. Per-point noise ``sigma``: the median absolute second difference over a
   centered window of 5% of the points (at least 21), times 1.4826/sqrt(6)
   (the standard deviation of white noise); second differences ignore a
   locally linear trend (a steep smooth climb is not noise), the median
   ignores spikes. It is floored at the logged resolution
   (the smallest non-zero change), so a quantized or constant loss has no
   events.
2. At scales w = 5, 15, 45, ... points (up to a quarter of the run) the loss
   is smoothed by a centered rolling median. Its noise ``sigma_w`` is the
   white-noise value 1.25 sigma / sqrt(w), or, from w = 15 on, the measured
   spread of the smoothed series if larger (lag-w second differences, which
   catch slow correlated wander). The reference is the running minimum of the trailing median over
   max(3w, 9) points (the best level reached so far, never looking ahead): a
   lucky minibatch or two does not lower it. At the smallest scale the first
   loss (at initialization) is part of the reference too, so a loss that
   jumps at the second logged point and stays up is caught; at longer
   scales a single point is too noisy a reference.
3. A point is unstable at scale w when the smoothed loss exceeds the
   reference by more than ``z`` (8) times ``sigma_w`` and by more than
   ``min_ratio`` (5%). z = 8 leaves room for the running minimum's downward
   bias (about 4 sigma_w over 10^4 windows) and for heavy-tailed minibatch
   losses: batch-size-4 runs stay quiet; no single point can trigger it, nor
   two (the smallest scale needs 3 of 5 consecutive points up: GPT-2 logs
   have pairs of 1.5x minibatch losses 2 steps apart). A scale whose rises
   are bounded under both bars is not smoothed at all (the same points are
   flagged, at a fraction of the cost): a centered median is at most the
   largest median of its window's three thirds (the scale below), and the
   reference is at least that of a smaller scale, whose trailing windows
   tile this one's; in runs of 8192 points or more, order statistics of
   blocks of points bound both first (over 135 points or more), and sigma
   is only computed at the few points a bound leaves in doubt; in shorter series
   without a broken point, a lower bound of sigma at those points (their
   windows' second differences alone) clears most scales without sigma as a whole.
4. Unstable points of all scales are merged into periods; a period starts
   where the loss began to climb above the reference and ends at its last
   unstable point. Its baseline is the median of the 9 points before it (never
   below the best level so far); it has recovered when the loss smoothed over
   9 points is back within max(4 sigma_9, 10% of the rise) of the baseline
   and stays there for as long as the event lasted (3 to 27 points). A new period that starts
   before the previous one recovered is the same event: one event, one
   finding.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import bottleneck as bn
import numpy as np

from . import rolling
from .signal import MAD_TO_SIGMA, row_medians

# Standard deviation of the median of w white-noise points, in sigma/sqrt(w).
_MEDIAN_EFFICIENCY = 1.2533


@dataclass(frozen=True)
class InstabilityConfig:
    """Thresholds of the detector (see the module docstring for why these defaults)."""

    z: float = 8.0
    min_ratio: float = 1.05
    min_points: int = 8
    noise_fraction: float = 0.05
    reference_points: int = 9
    recover_noise: float = 4.0
    recover_fraction: float = 0.1


@dataclass(frozen=True)
class InstabilityEvent:
    start_step: int
    end_step: int
    peak_step: int
    baseline_loss: float
    peak_loss: float
    max_loss: float
    size_noise: float
    ratio: float | None
    recovered: bool
    recovery_step: int | None
    nonfinite: bool

    @property
    def period(self) -> list[int]:
        return [self.start_step, self.end_step]

    def to_dict(self) -> dict:
        return {
            "start_step": self.start_step,
            "end_step": self.end_step,
            "peak_step": self.peak_step,
            "baseline_loss": self.baseline_loss,
            "peak_loss": self.peak_loss,
            "max_loss": self.max_loss,
            "size_noise": self.size_noise,
            "ratio": self.ratio,
            "recovered": self.recovered,
            "recovery_step": self.recovery_step,
            "nonfinite": self.nonfinite,
        }

    def describe(self) -> str:
        """One phrase with the numbers: 'steps 120-180, loss 0.41 -> 1.9 (4.6x, 31 noise sigmas), recovered at 260'."""
        if self.nonfinite:
            size = "to NaN/inf"
        else:
            ratio = f"{self.ratio:.3g}x, " if self.ratio is not None else ""
            size = f"{self.baseline_loss:.4g} -> {self.peak_loss:.4g} ({ratio}{self.size_noise:.3g} noise sigmas)"
        outcome = f"recovered at step {self.recovery_step}" if self.recovered else "did not recover"
        return f"steps {self.start_step}-{self.end_step}, loss {size}, {outcome}"


DEFAULT = InstabilityConfig()
_BROKEN = 1e300


def find_instability(steps, loss, config: InstabilityConfig = DEFAULT) -> list[InstabilityEvent]:
    """The unstable periods of one loss series, in step order.

    ``steps`` and ``loss`` are equal-length arrays sorted by step. NaN and inf
    losses mean the run broke (they are treated as an infinite loss); drop
    values that were merely not logged before calling.
    """
    steps = np.asarray(steps, dtype=np.int64)
    loss = np.asarray(loss, dtype=float)
    n = len(loss)
    if n < config.min_points:
        return []
    finite = np.isfinite(loss)
    # every loss finite and positive (the usual case) by two reductions: a NaN fails the first test, inf the second
    positive = bool(np.minimum.reduce(loss) > 0 and np.maximum.reduce(loss) < np.inf)
    whole = positive or bool(finite.all())
    if not whole and finite.sum() < config.min_points:
        return []
    log_space = positive or bool((loss > 0).all() if whole else (loss[finite] > 0).all())
    # Smoothing skips broken (NaN/inf) points; afterwards they are a huge finite stand-in
    # (the rolling median drops inf, as pandas' does), so they always count as unstable.
    # ``clean``: x is the log of finite positive losses, no point missing, none huge (|x| < 400):
    # the helpers then skip their searches for missing and broken points.
    clean = log_space and whole
    if clean:  # (no stand-in needed)
        x = np.log10(loss)
    else:
        x = np.where(finite, np.log10(np.where(finite & (loss > 0), loss, 1.0)) if log_space else loss, np.nan)

    min_rise = math.log10(config.min_ratio) if log_space else 0.0
    scales = _scales(n)
    reference_points = max(config.reference_points, 3) | 1

    unstable = ~finite
    # each scale's level and measured noise, once: the smoothing below uses them again
    levels: dict[int, np.ndarray] = {}
    noises: dict[int, np.ndarray] = {}
    # Bounds of the rises (_ceiling, _floor) spare most scales their medians. They hold on a series
    # without broken points, or before a broken tail (a diverged run: its points are unstable anyway).
    # With z >= 0 the white-noise bar is the lowest one, and a rise under min_rise needs no noise at all.
    broken_from = n if whole else int(np.argmin(finite))
    bounded = config.z >= 0 and (whole or not finite[broken_from:].any())
    sigma = None if bounded else _local_noise(x, finite, config)
    parts = None  # what sigma is made of, while only a few of its points are needed
    padded = None  # the second differences for a lower bound of sigma at a few points (short clean series)

    def cleared(rise: np.ndarray, w: int, settle: bool = True) -> bool:
        """No rise passes both bars at scale w (``rise``: the rises or a bound of them); unless ``settle``,
        False rather than sigma as a whole (a tighter bound may clear the scale without it)."""
        nonlocal sigma, parts, padded
        if broken_from < n:
            rise = np.where(finite, rise, -np.inf)
        half = w // 2
        middle = rise[half : len(rise) - half]
        # (NaN: no rise; the largest by a reduction, cheaper than a mask on most scales, which it clears)
        if not np.fmax.reduce(middle, initial=-np.inf) > max(min_rise, 0.0):
            return True
        if sigma is None and (clean or n >= SHORTCUTS_FROM):
            above = (middle > max(min_rise, 0.0)).nonzero()[0] + half
            if n < SHORTCUTS_FROM:  # (clean) a lower bound of sigma there may clear them (z >= 0: a lower bar)
                size = _noise_window(n, config)
                padded = _differences_padded(x, size) if padded is None else padded
                at = _noise_under(padded, above, size)
            elif len(above) <= _FEW_POINTS:
                parts = parts or _noise_parts(x, finite, config, clean)
                at = _local_noise_at(parts, above)
            else:
                at = None
            if at is not None and not (rise[above] > config.z * _white_noise(at, w)).any():
                return True
        if sigma is None:
            if not settle:
                return False
            sigma = _local_noise(x, finite, config, parts, clean)
        return not _passes(rise, config.z * _white_noise(sigma, w), min_rise, w)

    below, below_window = None, 0  # a lower bound of the best level at larger scales
    blocks: dict[int, tuple] = {}  # per window of BLOCKED_FROM points or more: its blocks' order statistics

    def block_bounds(window: int) -> tuple:
        if window not in blocks:
            blocks[window] = _block_orders(x, *_block_shape(window))
        return blocks[window]

    for i, w in enumerate(scales):
        # The best level so far, smoothed 3x more than the level it is compared with.
        window = max(3 * w, reference_points)
        if bounded and w in levels and below is not None and window % below_window == 0 and cleared(levels[w] - below, w):
            continue
        # Before any median of this scale: bounds from the order statistics of blocks of points.
        tiled = below is not None and window % below_window == 0
        if bounded and tiled and window >= BLOCKED_FROM and n >= SHORTCUTS_FROM:
            if w in levels:
                ceiling = levels[w]
            elif w // 3 in levels:
                ceiling = _ceiling(levels[w // 3], w // 3, broken_from)
            elif w >= BLOCKED_FROM:
                ceiling = _block_ceiling(block_bounds(w)[1], n, w, *_block_shape(w), broken_from)
            else:
                ceiling = None
            if ceiling is not None:
                if w not in levels and cleared(_rise_bound(ceiling, below), w, settle=False):
                    continue
                floor = np.maximum(below, _block_floor(block_bounds(window)[0], n, window, w, *_block_shape(window)))
                below, below_window = _floor(floor, x, w), window  # what ``best`` would give, a little lower
                if cleared(_rise_bound(ceiling, floor), w):
                    continue
        if i + 1 < len(scales) and scales[i + 1] == window:
            # that window is the next scale's: one rolling median gives both
            levels[window], trailing = _level_and_trailing(x, window, w, clean)
        else:
            trailing = rolling.median(x, window, min_periods=min(w, window))
        best = _running_min(_trailing_filled(trailing, x, w, clean), clean)
        if w == scales[0] and finite[0]:
            np.minimum(best, x[0], out=best)  # the loss at initialization: rising above it is instability
        if bounded:
            below, below_window = _floor(best, x, w), window
            if w not in levels and w // 3 in levels:
                with np.errstate(invalid="ignore"):  # inf - inf where a series holds inf: NaN, no rise there
                    ceiling = _ceiling(levels[w // 3], w // 3, broken_from) - best
                if cleared(ceiling, w):
                    continue
        level = levels[w] = levels[w] if w in levels else _median(x, w, clean)
        rise = level - best
        if bounded and cleared(rise, w):
            continue
        noise = _white_noise(sigma, w)
        # The measured spread (w >= 15) only raises the white-noise bar (z >= 0): it is needed
        # only when some rise passes that bar where the window was full.
        if w >= 15 and (config.z < 0 or _passes(rise, config.z * noise, min_rise, w)):
            noise = noises[w] = _level_noise(level, sigma, w, config)
        flagged = (rise > config.z * noise) & (rise > min_rise)
        # Only where the window was full: the padded ends copy a level from further in.
        flagged[: w // 2] = flagged[len(flagged) - w // 2 :] = False
        unstable |= flagged
    if not unstable.any():
        return []
    if sigma is None:  # only a broken tail was unstable
        sigma = _local_noise(x, finite, config)

    reference = _running_min(_trailing_median(x, reference_points, clean=clean), clean)
    fine = _median(x, 3, clean)
    fine_sigma = _level_noise(fine, sigma, 3, config)
    smooth_w = scales[min(1, len(scales) - 1)]
    smooth = levels[smooth_w] if smooth_w in levels else _median(x, smooth_w, clean)
    smooth_sigma = noises.get(smooth_w)

    def smooth_noise() -> np.ndarray:  # only when some event has points after it to recover on
        nonlocal smooth_sigma
        if smooth_sigma is None:
            smooth_sigma = _level_noise(smooth, sigma, smooth_w, config)
        return smooth_sigma

    events: list[InstabilityEvent] = []
    current: list[int] | None = None  # [start, end, recovery index or -1]
    for first, last in _segments(unstable):
        # Walk back to where the climb began: points still clearly above the best level.
        start, floor = first, (current[1] + 1 if current is not None else 0)
        while start > floor and min(fine[start - 1], x[start - 1]) - reference[start - 1] > 4 * fine_sigma[start - 1]:
            start -= 1
        # Aftershocks within one event-length of the recovery belong to the same event.
        if current is not None and (current[2] < 0 or start <= current[2] + max(3, current[1] - current[0] + 1)):
            current[1] = last
            baseline = _baseline(x, reference, current[0], reference_points)
            current[2] = _recovery(smooth, smooth_noise, baseline, fine, current[0], last, config)
            continue
        if current is not None:
            events.append(_event(steps, loss, x, fine, sigma, reference, current, log_space, reference_points))
        baseline = _baseline(x, reference, start, reference_points)
        current = [start, last, _recovery(smooth, smooth_noise, baseline, fine, start, last, config)]
    events.append(_event(steps, loss, x, fine, sigma, reference, current, log_space, reference_points))
    return events


# Runs longer than this many points are seen by the detector as block medians of at most
# BLOCK_TARGET points (longer than any real public log of ../shared/realworld: 20k points).
LONG_RUN_POINTS = 32_768
BLOCK_TARGET = 10_000

# Where a run keeps its events, per detector config: in the run's own __dict__, so they travel
# with it (pickled back from a worker process) and the run cache can store them.
_MEMO = "_instability_events"


def run_instability(run, config: InstabilityConfig = DEFAULT) -> list[InstabilityEvent]:
    """``find_instability`` on a run's training loss (applied updates; unlogged values dropped), memoised on the run.

    A run longer than ``LONG_RUN_POINTS`` is first reduced to medians of
    blocks of ``ceil(n / BLOCK_TARGET)`` consecutive points (a block holding a
    non-finite loss is that loss, at its step): the detector's smallest scale
    is 5 points anyway, so only a rise shorter than half a block is lost, and
    each run costs the same whatever its length. Periods end at their last
    block's last step; ``max_loss`` is the largest raw loss of the period.
    """
    per_run = run.__dict__.setdefault(_MEMO, {})
    if config not in per_run:
        steps, loss = run_loss(run)
        if len(loss) <= LONG_RUN_POINTS:
            per_run[config] = find_instability(steps, loss, config)
        else:
            per_run[config] = _find_in_blocks(steps, loss, config)
    return per_run[config]


def memoised(run) -> dict:
    """The events already found on ``run``, by detector config (for the run cache)."""
    return dict(run.__dict__.get(_MEMO, {}))


def remember(run, found: dict) -> None:
    """Give ``run`` events found earlier (by a worker, or stored in the run cache)."""
    run.__dict__.setdefault(_MEMO, {}).update(found)


def _find_in_blocks(steps: np.ndarray, loss: np.ndarray, config: InstabilityConfig) -> list[InstabilityEvent]:
    size = -(-len(loss) // BLOCK_TARGET)
    full = len(loss) // size * size
    with np.errstate(invalid="ignore"):
        level = row_medians(loss[:full].reshape(-1, size))
        if full < len(loss):
            level = np.append(level, np.median(loss[full:]))
    block_steps = steps[::size].copy()  # each block's first step
    # a finite sum (the usual case) has no NaN or inf in it, at a third of the cost of looking for them
    broken = np.flatnonzero(~np.isfinite(loss)) if not math.isfinite(loss.sum()) else ()
    if len(broken):
        # the first non-finite loss of each block stands for the block, at its own step
        blocks, first = np.unique(broken // size, return_index=True)
        level[blocks] = loss[broken[first]]
        block_steps[blocks] = steps[broken[first]]
    found = find_instability(block_steps, level, config)
    if not found:
        return []
    last_steps = np.append(steps[size - 1 : full : size], steps[-1])[: len(block_steps)]  # each block's last step
    return [_raw_extent(event, steps, loss, int(last_steps[np.searchsorted(block_steps, event.end_step, side="right") - 1])) for event in found]


def _raw_extent(event: InstabilityEvent, steps: np.ndarray, loss: np.ndarray, end_step: int) -> InstabilityEvent:
    period = loss[np.searchsorted(steps, event.start_step) : np.searchsorted(steps, end_step, side="right")]
    finite = period[np.isfinite(period)]
    max_loss = float("inf") if event.nonfinite or finite.size == 0 else float(finite.max())
    return dataclasses.replace(event, end_step=end_step, max_loss=max_loss)


def run_loss(run) -> tuple[np.ndarray, np.ndarray]:
    """Steps and training losses of the applied updates; a NaN the log wrote stays, a missing value goes.

    When nothing goes they are the table's own arrays: read them, never write to them.
    """
    updates = run.updates()
    steps = run.column(updates, "step", np.int64)
    loss = run.column(updates, "loss", float)
    missing = np.isnan(loss)
    if not missing.any():
        return steps, loss
    keep = ~missing | np.isin(steps, run.nan_steps.get("loss", []))
    return steps[keep], loss[keep]


def noise_scale(loss) -> float:
    """Median per-point noise of a loss series (log10 units when positive), as the detector measures it."""
    loss = np.asarray(loss, dtype=float)
    finite = np.isfinite(loss)
    if finite.sum() < 3:
        return float("nan")
    values = loss[finite]
    x = np.log10(values) if (values > 0).all() else values
    return float(_D2_TO_SIGMA * np.nanmedian(_second_differences(x)))


def _second_differences(x: np.ndarray, clean: bool = False) -> np.ndarray:
    """|x[t-1] - 2 x[t] + x[t+1]| (NaN where a neighbour is missing): blind to any locally linear trend.
    (``clean``: none missing and none that overflows, as in ``find_instability``.)"""
    d2 = np.full(len(x), np.nan)
    if len(x) >= 3:
        with np.errstate(invalid="ignore"):
            d2[1:-1] = np.abs(x[:-2] - 2 * x[1:-1] + x[2:])
    if not clean:
        d2[~np.isfinite(d2)] = np.nan
    return d2


# Standard deviation of white noise from the median absolute second difference (var = 6 sigma^2).
_D2_TO_SIGMA = MAD_TO_SIGMA / math.sqrt(6)


def _noise_parts(
    x: np.ndarray, finite: np.ndarray, config: InstabilityConfig, clean: bool = False
) -> tuple[np.ndarray, int, float]:
    """What ``_local_noise`` is made of: the second differences, the window of their median, and the floor."""
    n = len(x)
    present = x if clean or finite.all() else x[finite]  # (no copies of a series without a broken point)
    d2 = _second_differences(x if len(present) == n else np.where(finite, x, np.nan), clean)
    size = _noise_window(n, config)
    diffs = np.abs(present[1:] - present[:-1])
    resolution = float(np.minimum.reduce(diffs, where=diffs > 0, initial=np.inf))  # the smallest change; inf: none
    resolution = resolution if resolution < np.inf else 0.0
    values = np.abs(present)
    # the floor's middle term is at most 1e-9 of the largest value: no median needed when that is under the resolution
    if values.size and resolution >= 1e-9 * max(float(values.max()), 1e-12):
        return d2, size, max(resolution, 1e-12)
    scale = float(np.median(values)) if values.size else 0.0
    return d2, size, max(resolution, 1e-9 * max(scale, 1e-12), 1e-12)


def _local_noise(
    x: np.ndarray, finite: np.ndarray, config: InstabilityConfig, parts: tuple | None = None, clean: bool = False
) -> np.ndarray:
    d2, size, floor = parts or _noise_parts(x, finite, config, clean)
    medians = rolling.median(d2, size, center=True, min_periods=1)
    # (most series: every window holds a second difference; a clean one of 3 points or more, as size >= 21)
    if (clean and len(x) >= 3) or not np.isnan(medians).any():
        medians *= _D2_TO_SIGMA
        return np.maximum(medians, floor, out=medians)
    local = rolling.bfill(rolling.ffill(medians)) * _D2_TO_SIGMA
    return np.fmax(local, floor)  # NaN (no window held a difference): the floor; no inf (finite differences only)


def _noise_window(n: int, config: InstabilityConfig) -> int:
    """The window of the second differences' median in ``_local_noise``."""
    return max(21, int(n * config.noise_fraction)) | 1


def _differences_padded(x: np.ndarray, size: int) -> np.ndarray:
    """The second differences of a clean series (``find_instability``; ``_second_differences``' numbers), and
    size // 2 + 1 missing ones before and after them as zeros and +inf in turn, zeros nearest: a window of
    ``size`` reaching an end holds as many zeros as +inf, or one more (see ``_noise_under``)."""
    half = size // 2
    padded = np.zeros(len(x) + 2 * half)
    padded[half + 1 : half + len(x) - 1] = np.abs(x[:-2] - 2 * x[1:-1] + x[2:])
    padded[half - 1 :: -2] = padded[half + len(x) :: 2] = np.inf
    return padded


def _noise_under(padded: np.ndarray, points: np.ndarray, size: int) -> np.ndarray:
    """At most ``_local_noise`` at these points of a clean series: its median before the floor, from
    ``_differences_padded``. A window missing m differences at one end holds ceil(m / 2) zeros (at most any
    difference) and floor(m / 2) +inf: its middle value is that of the c = size - m differences it holds when c
    is odd, the lower of their two middle ones when c is even (at most their mean); a window reaching both ends
    (a short series) may hold one zero more, and its middle value is then lower still."""
    half = size // 2
    rows = _windows(padded, size)[points]  # (a copy: partitioned in place)
    rows.partition(half, axis=1)
    return rows[:, half] * _D2_TO_SIGMA


# Up to this many points, sigma is worth computing point by point instead of as a whole.
_FEW_POINTS = 32


def _local_noise_at(parts: tuple, points: np.ndarray) -> np.ndarray | None:
    """``_local_noise`` at these points only, bit for bit (each window's middle second difference or the mean of
    its two middle ones, as ``rolling.median``), or None if a window holds none (the whole series fills it in)."""
    d2, size, floor = parts
    half = size // 2
    missing = np.full(half, np.nan)
    windows = _windows(np.concatenate((missing, d2, missing)), size)[points]
    count = size - np.isnan(windows).sum(axis=1)
    if not count.all():
        return None
    ordered = np.sort(windows, axis=1)  # NaN last
    rows = np.arange(len(points))
    low, high = ordered[rows, (count - 1) // 2], ordered[rows, count // 2]
    median = np.where(count % 2 == 1, low, (low + high) / 2)
    return np.maximum(median * _D2_TO_SIGMA, floor)


def _level_noise(level: np.ndarray, sigma: np.ndarray, w: int, config: InstabilityConfig) -> np.ndarray:
    """Noise of a w-point rolling median: white-noise theory, or (w >= 15) the measured spread if larger.

    The measured spread (lag-w second differences, blind to a linear trend)
    catches slow correlated wander, which matters at long windows only.
    """
    theory = _white_noise(sigma, w)
    if w < 15:
        return theory
    n = len(level)
    d2 = np.full(n, np.nan)
    with np.errstate(invalid="ignore"):
        d2[w:-w] = np.abs(level[: -2 * w] - 2 * level[w:-w] + level[2 * w :])
    d2[~(d2 < _BROKEN / 2)] = np.nan
    size = max(21, int(n * config.noise_fraction), 8 * w) | 1
    measured = rolling.median(d2, size, center=True, min_periods=1) * _D2_TO_SIGMA
    return np.fmax(theory, measured)


def _white_noise(sigma: np.ndarray, w: int) -> np.ndarray:
    return _MEDIAN_EFFICIENCY * sigma / math.sqrt(w)


def _scales(n: int) -> list[int]:
    scales = [5]
    while scales[-1] * 3 <= n // 4:
        scales.append(scales[-1] * 3)
    return scales


def _median(x: np.ndarray, w: int, clean: bool = False) -> np.ndarray:
    """The centered median over w (odd) points as a level (``_filled``); ``clean`` as in ``find_instability``
    (a log10: no inf, and no -0.0 to tie with 0.0)."""
    ends = w // 2 if clean and len(x) >= w else None
    if w in (3, 5) and len(x) >= w and (clean or not ((x == 0).any() or np.isinf(x).any())):
        return _filled(_small_median(x, w), x, ends)
    return _filled(rolling.median(x, w, center=True), x, ends)


def _small_median(x: np.ndarray, w: int) -> np.ndarray:
    """``rolling.median(x, w, center=True)`` for w = 3 or 5 (``x`` without inf, len(x) >= w), by minima and
    maxima of shifted copies: NaN in a window makes its median NaN, as a missing value does there. (Not with a
    zero in ``x``: -0.0 and 0.0 tie, and which one a median returns would be left to chance.)"""
    n, half = len(x), w // 2
    a, b, c = x[: n - w + 1], x[1 : n - w + 2], x[2 : n - w + 3]
    if w == 5:  # the median of a, b, d, e and c is the median of c and the middle two of a, b, d, e
        # (a, b) and (d, e) = x[3:], x[4:] are pairs of neighbours: their minima and maxima in one pass each
        low, high = np.minimum(x[:-1], x[1:]), np.maximum(x[:-1], x[1:])
        a, b = np.maximum(low[: n - 4], low[3:]), np.minimum(high[: n - 4], high[3:])
    medians = np.full(n, np.nan)
    medians[half : n - half] = np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))
    return medians


def _filled(medians: np.ndarray, x: np.ndarray, ends: int | None = None) -> np.ndarray:
    """Centered medians of ``x`` as a level: the ends filled in, a broken point broken. ``ends``: only the first
    and the last ``ends`` medians are missing (``x`` clean, more than 2 ``ends`` points): filled in place."""
    if ends is not None:
        n = len(medians)
        medians[:ends], medians[n - ends :] = medians[ends], medians[n - ends - 1]
        return medians
    level = rolling.bfill(rolling.ffill(medians))
    level[np.isnan(x)] = _BROKEN
    return level


def _trailing_median(x: np.ndarray, w: int, min_periods: int = 3, clean: bool = False) -> np.ndarray:
    """Median of the last w points: the level reached so far, without looking ahead (see ``_trailing_filled``)."""
    return _trailing_filled(rolling.median(x, w, min_periods=min(min_periods, w)), x, min_periods, clean)


def _trailing_filled(medians: np.ndarray, x: np.ndarray, min_periods: int, clean: bool = False) -> np.ndarray:
    """Trailing medians of ``x`` (over at least ``min_periods`` points) as a reference level.

    With the default 3 points the first values are filled back from the first
    median (the run's starting level); with more, there is no reference (inf)
    until ``min_periods`` points exist, so a long-window level is only ever
    compared with a reference as smooth as itself. ``clean`` (as in
    ``find_instability``): only those first medians are missing, filled in place.
    """
    if clean and len(x) >= min_periods:
        medians[: min_periods - 1] = medians[min_periods - 1] if min_periods <= 3 else np.inf
        return medians
    level = rolling.ffill(medians)
    level = rolling.bfill(level) if min_periods <= 3 else np.where(np.isnan(level), np.inf, level)
    level[np.isnan(x)] = _BROKEN
    return level


def _level_and_trailing(x: np.ndarray, w: int, min_periods: int, clean: bool) -> tuple[np.ndarray, np.ndarray]:
    """``_filled(rolling.median(x, w, center=True), x)`` and ``rolling.median(x, w, min_periods=min_periods)``,
    bit for bit, from one ``move_median`` (``x`` has no inf; ``w <= len(x)``; ``clean`` as in ``find_instability``).

    The centered window of t is the trailing one of t + (w - 1) // 2 over ``x`` padded with missing
    values; a window's median does not depend on how many values it needs, only whether it is given.
    """
    n, shift = len(x), (w - 1) // 2
    if clean:  # no missing point: the full windows are those that end at w - 1 or later, no padding needed
        trailing = bn.move_median(x, w, min_count=min_periods)
        level = np.empty(n)
        level[w - 1 - shift : n - shift] = trailing[w - 1 :]
        level[: w - 1 - shift], level[n - shift :] = trailing[w - 1], trailing[n - 1]
        return level, trailing
    padded = np.concatenate((x, np.full(shift, np.nan)))
    medians = bn.move_median(padded, w, min_count=min_periods)
    missing = np.isnan(x)
    end = int(missing.argmax()) if missing.any() else n  # the first missing point
    if missing[end:].all():  # none missing before the padding or a broken tail (a diverged run)
        # the windows that start at 0 or later and end before ``end``
        full = np.zeros(n, dtype=bool)
        full[w - 1 - shift : max(end - shift, 0)] = True
    else:
        present = np.concatenate(([0], np.cumsum(~np.isnan(padded))))
        full = present[shift + 1 :] - present[np.maximum(np.arange(shift + 1 - w, n + shift + 1 - w), 0)] >= w
    return _filled(np.where(full, medians[shift:], np.nan), x), medians[:n]


def _passes(rise: np.ndarray, bar: np.ndarray | float, min_rise: float, w: int) -> bool:
    """Whether some rise passes both bars where the window of ``w`` points was full."""
    return bool(((rise > bar) & (rise > min_rise))[w // 2 : len(rise) - w // 2].any())


def _ceiling(level: np.ndarray, third: int, end: int) -> np.ndarray:
    """At least the centered median over ``3 * third`` points wherever its window is full, from the
    centered medians over ``third`` points: the window is their three windows, around t - third, t and
    t + third, and a median of a union is at most the largest median of its parts. Before a broken tail
    from ``end`` on, the last windows copy the last full one's median (``_filled``), and so its bound.
    """
    ceiling = level.copy()
    np.maximum(ceiling[third:], level[:-third], out=ceiling[third:])
    np.maximum(ceiling[:-third], level[third:], out=ceiling[:-third])
    half = 3 * third // 2
    if end - half - 1 >= half:
        ceiling[end - half : end] = ceiling[end - half - 1]
    return ceiling


def _floor(best: np.ndarray, x: np.ndarray, w: int) -> np.ndarray:
    """At most the best level of every larger scale whose trailing window is a multiple of this one's
    (``x`` has no missing point but in a broken tail): that window is tiled by this scale's windows, and a
    median of a union is at least the lowest median of its parts (half of each part is at or above its
    own); at the start the earliest part may hold fewer than ``w`` points, and is at least its smallest."""
    return np.minimum(best, np.fmin.reduce(x[: w - 1]))


# Medians over this many points or more are first bounded from blocks of points (``_block_shape``), in series of
# SHORTCUTS_FROM points or more (sigma at a few points too): on shorter ones the medians cost less than the bounds.
BLOCKED_FROM = 135
SHORTCUTS_FROM = 8192


def _block_shape(window: int) -> tuple[int, int]:
    """Blocks of 1/15 of the window, and the order statistic p of each that the bounds use (its p-th smallest
    and largest point, p = 1/8 of the block): each bound is then an order statistic of 16-17 blocks' whatever
    the window. Larger blocks, or p = 0, leave the bounds too loose on the generated 100k-step runs (trend
    and noise); smaller ones cost more than the medians they spare."""
    size = window // 15
    return size, size // 8


def _block_orders(x: np.ndarray, size: int, p: int) -> tuple[np.ndarray, np.ndarray]:
    """The p-th smallest and the p-th largest point of each block of ``size`` points (aligned at 0; a missing
    point counts as +inf, which only loosens the bounds). A short last block has a p-th largest only if it
    holds more than p points (-inf otherwise: none of it can be above anything)."""
    n = len(x)
    count = -(-n // size)
    padded = np.full(count * size, np.inf)
    padded[:n] = x
    padded[:n][np.isnan(x)] = np.inf
    ordered = np.sort(padded.reshape(count, size), axis=1)
    lows, highs = ordered[:, p], ordered[:, size - 1 - p].copy()
    short = n - (count - 1) * size
    if short < size:  # the pads sort last
        highs[-1] = ordered[-1, short - 1 - p] if short > p else -np.inf
    return lows, highs


def _block_rank(r: np.ndarray | int, count: np.ndarray | int, size: int, p: int):
    """The rank q (from the bottom for a floor, the top for a ceiling) among ``count`` blocks' order statistics
    that bounds a median with at most r points beyond it: at most q blocks lie wholly beyond the q-th value, and
    every other block holds at most p points beyond it, so fewer than r + 1 points lie beyond it when
    q * size + (count - q) * p <= r."""
    return (r - count * p) // (size - p)


def _block_floor(lows: np.ndarray, n: int, window: int, min_periods: int, size: int, p: int) -> np.ndarray:
    """At most the best level (the running minimum of the trailing median over ``window`` points, of at least
    ``min_periods`` > 3) at every t, +inf where there is none yet, from ``_block_orders``' lows: the windows ending in
    a block lie in that block and the ``count - 1`` before it, and hold (points - 1) // 2 points below their median."""
    count = -(-(window - 1) // size) + 1
    # +inf before the first block: never below anything, and sorted past the ranks taken
    rows = _windows(np.concatenate((np.full(count - 1, np.inf), lows)), count)
    floor = np.empty(len(lows))
    full = min(len(lows), -(-(window - 1) // size))  # from this block on every window holds ``window`` points
    q = _block_rank((window - 1) // 2, count, size, p)
    floor[full:] = np.partition(rows[full:], q, axis=1)[:, q] if q >= 0 else -np.inf
    block = np.arange(full)
    points = np.maximum(min_periods, block * size + 1)  # the fewest of any window ending in the block
    q = _block_rank((points - 1) // 2, block + 1, size, p)
    floor[:full] = np.where(q >= 0, np.sort(rows[:full], axis=1)[block, np.clip(q, 0, count - 1)], -np.inf)
    floor[:full][(block + 1) * size < min_periods] = np.inf  # no window of min_periods points ends in these blocks
    return np.repeat(np.minimum.accumulate(floor), size)[:n]


def _block_ceiling(highs: np.ndarray, n: int, w: int, size: int, p: int, end: int) -> np.ndarray:
    """At least the centered median over w (odd) points wherever its window is full, from ``_block_orders``'
    highs: the windows around a block's points lie in it and the blocks around it, and hold w // 2 points above
    their median. Before a broken tail from ``end`` on, the last levels copy the last full window's (``_filled``)."""
    half = w // 2
    before, after = -(-half // size), (size - 1 + half) // size
    count = before + after + 1
    q = _block_rank(half, count, size, p)
    if q < 0:
        return np.full(n, np.inf)
    # -inf beyond the ends: no point above anything
    padded = np.concatenate((np.full(before, -np.inf), highs, np.full(after, -np.inf)))
    rows = np.partition(_windows(padded, count), count - 1 - q, axis=1)
    ceiling = np.repeat(rows[:, count - 1 - q], size)[:n]
    if end - half - 1 >= half:
        ceiling[end - half : end] = ceiling[end - half - 1]
    return ceiling


def _windows(values: np.ndarray, size: int) -> np.ndarray:
    """The windows of ``size`` consecutive values (of a contiguous array), as rows of a view never written to:
    ``sliding_window_view`` without its checks, which cost more than the work on short series."""
    step = values.strides[0]
    return np.ndarray((len(values) - size + 1, size), values.dtype, values, strides=(step, step))


def _rise_bound(ceiling: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """``ceiling - floor``, -inf where there is no best level yet (an infinite floor), else +inf if undefined."""
    with np.errstate(invalid="ignore"):
        rise = ceiling - floor
    rise[floor == np.inf] = -np.inf
    rise[np.isnan(rise)] = np.inf
    return rise


def _running_min(level: np.ndarray, clean: bool = False) -> np.ndarray:
    """The running minimum of a reference level, a broken point not a level (``clean``: there is none: in place)."""
    if clean:
        return np.minimum.accumulate(level, out=level)
    return np.minimum.accumulate(np.where(level >= _BROKEN, np.inf, level))


def _segments(mask: np.ndarray) -> list[tuple[int, int]]:
    """The first and last index of each run of True in ``mask``."""
    edged = np.concatenate(([False], mask, [False]))
    changes = (edged[1:] != edged[:-1]).nonzero()[0]  # where each run starts, and one past where it ends
    return list(zip(changes[::2].tolist(), (changes[1::2] - 1).tolist()))


def _recovery(smooth, smooth_noise, baseline: float, fine, start: int, last: int, config) -> int:
    """Index where the smoothed loss is back near the baseline after the peak, or -1 (``smooth_noise()``: the
    noise of ``smooth``, asked for only when enough points follow the event)."""
    # Back for good: for as long as the event lasted (3 to 27 points), not one lucky point.
    hold = min(max(3, last - start + 1), 27)
    after = smooth[last + 1 :]
    if after.size < hold:
        return -1
    peak = start + int(fine[start : last + 1].argmax())
    margin = config.recover_noise * smooth_noise()[last + 1 :]
    if fine[peak] < _BROKEN:
        margin = np.maximum(margin, config.recover_fraction * (fine[peak] - baseline))
    back = (after < _BROKEN) & (after <= baseline + margin)
    held = np.convolve(back, np.ones(hold), mode="valid") >= hold
    first = held.nonzero()[0]
    return last + 1 + int(first[0]) if first.size else -1


def _baseline(x: np.ndarray, reference: np.ndarray, start: int, points: int) -> float:
    """The level just before the event: the median of the points before it, never below the best level so far."""
    before = sorted(value for value in x[max(0, start - points) : start].tolist() if math.isfinite(value))
    if len(before) < 3:
        return float(reference[start])
    # np.median's number (as signal.row_medians): its mean's sum starts at 0.0, so a -0.0 median is 0.0
    middle = before[(len(before) - 1) // 2] + 0.0
    if len(before) % 2 == 0:
        middle = (middle + before[len(before) // 2]) / 2
    return float(max(reference[start], middle))


def _event(steps, loss, x, fine, sigma, reference, current, log_space: bool, points: int) -> InstabilityEvent:
    start, end, recovery = current
    peak = start + int(fine[start : end + 1].argmax())
    baseline = _baseline(x, reference, start, points)
    peak_level = float(fine[peak]) if fine[peak] < _BROKEN else float("inf")
    period = loss[start : end + 1]
    nonfinite = not np.isfinite(period).all() or not math.isfinite(peak_level)
    rise = peak_level - baseline if math.isfinite(baseline) else float("inf")
    to_loss = (lambda v: float(10**v) if math.isfinite(v) else float("nan")) if log_space else float
    finite_period = period[np.isfinite(period)]
    return InstabilityEvent(
        start_step=int(steps[start]),
        end_step=int(steps[end]),
        peak_step=int(steps[peak]),
        baseline_loss=to_loss(baseline),
        peak_loss=to_loss(peak_level) if math.isfinite(peak_level) else float("inf"),
        max_loss=float("inf") if nonfinite else float(finite_period.max()),
        size_noise=float(rise / sigma[peak]) if math.isfinite(rise) else float("inf"),
        ratio=(float(10**rise) if math.isfinite(rise) else float("inf")) if log_space else None,
        recovered=recovery >= 0,
        recovery_step=int(steps[recovery]) if recovery >= 0 else None,
        nonfinite=bool(nonfinite),
    )
