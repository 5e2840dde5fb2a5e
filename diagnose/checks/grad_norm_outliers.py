"""Outlier gradient norms: single updates whose gradient is many times larger than the ones around it.

Detects:
Steps whose unclipped global gradient norm is at least ``min_ratio`` (5x)
the typical norm around it and more than ``z`` (6) noise sigmas above it,
on a run that logs ``grad_norm``; each is matched with the loss
instability it came with, if any. It carries the clipping threshold the
Tuning Playbook recommends: the 90th percentile of the unclipped norms.

Why:
Tuning Playbook (seed 002): "Log the L2 norm of the full loss gradient
during training, since outlier values can cause spurious instability in
the middle of training. This can inform how aggressively to clip
gradients", and "Choose a gradient clipping threshold based on the 90th
percentile of gradient norms". One outlier batch can throw a run back by
hundreds of steps (see ``loss_spike``); clipping at the 90th percentile
takes the outlier's step down to a typical size and leaves 90% of the
updates alone.

Algorithm:
On log10 of the finite, positive grad norms of the applied updates: the
typical level is the larger of a centered rolling median over 5% of the
points (at least 21, at most 1001: the level is local) and a trailing median over the same window (so the
large norms right at initialization, with nothing before them, are not
outliers: at least 5 earlier points are required); the noise sigma is the
median absolute step-to-step change times 1.4826/sqrt(2), over the run. An
outlier is >= ``min_ratio`` (5x) and > ``z`` (6) sigmas above the typical
level: a batch-size-4 run's norms reach 4.6x at most in the corpus, a
full-batch run's 2.4x; both criteria are needed because full-batch norms
have almost no noise (so sigma alone flags 1.1x wiggles) and batch-4 norms
a lot. Severity: warning when an outlier falls within 2 steps of the start
of (or inside) a loss instability period (``diagnose.instability``), else
info.

Example:
An MLP regressor (SGD, lr 0.01, batch 32) with one batch of 5x targets at
step 300: the grad norm there is 31x its typical level, and the loss
spikes at the same step: one warning, outlier_steps [300, 302, ...],
threshold 0.88 (90th percentile over steps 40-799), which clips 76 of the
760 updates. With clipping at 1.0 the same outlier is info only.

Recommends:
``clip`` with ``threshold`` = the 90th percentile of the unclipped grad
norms after the first ``skip_fraction`` (5%) of the run (the init
transient) and before a divergence, the window it was computed over, and
how many updates it would clip. If the run already clips below that: half its threshold (the
Playbook: "try it harder").
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np

from .. import rolling
from ..findings import Finding, Recommendation, Severity, round_sig
from ..instability import run_instability
from ..model import Run
from ..signal import MAD_TO_SIGMA, percentile
from . import divergence
from .registry import Check, Scope


@dataclass(frozen=True)
class Config:
    min_ratio: float = 5.0
    z: float = 6.0
    window_fraction: float = 0.05
    skip_fraction: float = 0.05
    percentile: float = 90.0


def detect(run: Run, config: Config) -> list[Finding]:
    updates = run.updates()
    norms = run.column(updates, "grad_norm", float)
    steps = run.column(updates, "step")
    if not (np.isfinite(norms).all() and norms.min() > 0):  # else every norm is usable, without a mask
        usable = np.isfinite(norms) & (norms > 0)
        steps, norms = steps[usable], norms[usable]
    if norms.size < 20:
        return []
    outliers, ratios, typical = _outliers(norms, config)
    if not outliers.size:
        return []

    start = int(len(norms) * config.skip_fraction) if len(norms) * (1 - config.skip_fraction) >= 20 else 0
    # A diverged run's last norms are not a scale for clipping: stop the window where divergence starts.
    diverged = divergence.detect(run, divergence.CHECK.config)
    stop = len(norms)
    if diverged and diverged[0].steps and (steps < diverged[0].steps[0]).sum() > start + 10:
        stop = int((steps < diverged[0].steps[0]).sum())
    window = norms[start:stop]
    threshold = float(percentile(window, config.percentile))
    current = run.config.get("clip_norm")
    harder = _clips(current) and current <= threshold
    if harder:
        threshold = current / 2
    clipped = int((window > threshold).sum())
    outlier_steps = [int(s) for s in steps[outliers]]
    with_loss = _with_loss_instability(run, outlier_steps)
    worst = int(np.argmax(ratios))
    worst_step, worst_ratio = outlier_steps[worst], float(ratios[worst])
    median = float(np.median(norms))
    span = [int(steps[start]), int(steps[stop - 1])]

    title = (
        f"{run.name}: {len(outlier_steps)} outlier gradient norm{'s' if len(outlier_steps) > 1 else ''}, "
        f"up to {worst_ratio:.3g}x the typical norm (step {worst_step})"
        + (f"; the loss spiked with them at step {with_loss[0]}" if with_loss else "")
    )
    detail = (
        f"Grad norms at least {config.min_ratio:g}x (and {config.z:g} noise sigmas above) their running typical "
        f"level at steps {', '.join(map(str, outlier_steps[:20]))}{' ...' if len(outlier_steps) > 20 else ''}; "
        f"the median grad norm is {median:.3g}. "
        + (
            f"Loss instability starts within 2 steps of the outliers at steps {', '.join(map(str, with_loss))}."
            if with_loss
            else "No loss instability came with them."
        )
        + (f" The run clips at {current:g}: these updates were clipped." if _clips(current) else "")
    )
    return [
        Finding(
            check="grad_norm_outliers",
            severity=Severity.WARNING if with_loss else Severity.INFO,
            study=run.study,
            runs=(run.name,),
            steps=(outlier_steps[0], outlier_steps[-1]),
            title=title,
            detail=detail,
            evidence={
                "threshold": round_sig(threshold, 3),
                "percentile": config.percentile,
                "window": span,
                "clipped_fraction": clipped / window.size,
                "clipped_updates": clipped,
                "outlier_steps": outlier_steps[:50],
                "outlier_ratios": [round_sig(float(r), 3) for r in ratios[:50]],
                "median": median,
                "typical_at_worst": float(typical[worst]),
                "loss_instability_steps": with_loss,
            },
            recommendation=Recommendation(
                action="clip",
                values={"threshold": round_sig(threshold)},  # the percentile and window are in evidence
                why=(
                    f"the run already clips at {current:g}, and outliers still get through: clip harder, at half that"
                    if harder
                    else f"{threshold:.3g} is the {config.percentile:g}th percentile of the unclipped grad norms over "
                    f"steps {span[0]}-{span[1]} (Tuning Playbook, 'Gradient clipping'); it would have clipped "
                    f"{clipped} of those {window.size} updates ({clipped / window.size:.0%}), the outliers among them"
                ),
            ),
        )
    ]


def _clips(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")


def _outliers(norms: np.ndarray, config: Config):
    """Indices of the outliers, their ratios to the typical level and that level."""
    size = min(max(21, int(len(norms) * config.window_fraction)), 1001) | 1
    # The floor below is an order statistic, so on the norms themselves it is (log10 being monotone, to the
    # rounding of the logs that the 1% margin covers) the norm whose log it is in log space: a run with no
    # norm near min_ratio x its floor has no outlier and needs no logs, noise or medians (most long runs).
    if _all_below_floor(norms, size, 0.99 * config.min_ratio):
        return np.array([], dtype=np.int64), np.array([]), np.array([])
    x = np.log10(norms)
    sigma = max(MAD_TO_SIGMA * float(np.median(np.abs(np.diff(x)))) / math.sqrt(2), 1e-12)

    def outlying(excess):
        return (excess >= math.log10(config.min_ratio)) & (excess > config.z * sigma)

    # the typical level is at least the centered median, which is at least its floor: only points
    # outlying above the floor are candidates (on a long run a few, whose medians are taken one by one)
    at = np.flatnonzero(outlying(x - _median_floor(x, size)))
    centered, trailing = _rolling_medians(x, size, at)
    typical = np.fmax(centered, trailing)
    excess = x[at] - typical
    keep = np.isfinite(trailing) & outlying(excess)
    return at[keep], 10 ** excess[keep], 10 ** typical[keep]


def _median_floor(x: np.ndarray, size: int) -> np.ndarray:
    """A lower bound of the centered ``size``-point median at every point, in one O(n) pass: ``_block_floors``,
    the first over the first size // 2 points (their windows start at 0), then each over the next ``size``
    points (each block's points shifted by size // 2)."""
    low = _block_floors(x, size)
    return np.concatenate((np.full(size // 2, low[0]), np.repeat(low, size)))[: len(x)]


def _all_below_floor(x: np.ndarray, size: int, ratio: float) -> bool:
    """``(x < _median_floor(x, size) * ratio).all()`` for ``x`` without NaN, without the floor at every point:
    it is one value over each stretch of points, which the stretch's largest value tells. Lower bounds of
    the floors (~2/3 of their cost) tell most long runs; under ~5,000 points the floors cost less than them."""
    largest = np.maximum.reduceat(x, np.concatenate(([0], np.arange(size // 2, len(x), size))))
    for bound in (True, False) if len(x) > 5_000 else (False,):
        low = _block_floors(x, size, bound)
        if (largest < np.concatenate(([low[0]], low))[: len(largest)] * ratio).all():
            return True
    return False


def _block_floors(x: np.ndarray, size: int, bound: bool = False) -> np.ndarray:
    """The lower bounds of ``_median_floor``, one per block of ``size`` points (``bound``: lower bounds of those).

    The centered window of t holds k >= min(n, size // 2 + 1) points and lies within
    blocks b, b + 1 of ``size`` points (b: the block of its first point). Its median is
    at least its r-th smallest value, r = ceil(k / 2), which is at least the smaller of
    the two blocks' s-th smallest values, s = ceil(r / 2): at most s - 1 values of each
    block lie below that, 2s - 2 < r in all. (Each block is partitioned once.)
    The s smallest values of a block lie in at least ceil(s / 8) of its groups of 8
    values, whose minima are thus at most its s-th smallest: so is the ceil(s / 8)-th
    smallest group minimum, the bound (1/8 of the values partitioned).
    """
    n = len(x)
    rank = (min(n, size // 2 + 1) + 1) // 2
    block_rank = (rank + 1) // 2
    # rows of whole groups of 8, padded with +inf (which changes no block's s-th smallest, s <= size),
    # and one block more, the last one's neighbour
    blocks = np.full((-(-n // size) + 1, -(-size // 8) * 8), np.inf)
    whole = n // size
    blocks[:whole, :size] = x[: whole * size].reshape(whole, size)
    blocks[whole, : n - whole * size] = x[whole * size :]
    if bound:
        blocks = blocks.reshape(len(blocks), 8, -1).min(axis=1)  # group j of a block: its values j, j + width / 8, ...
        block_rank = -(-block_rank // 8)
    blocks.partition(block_rank - 1, axis=1)
    return np.minimum(blocks[:-1, block_rank - 1], blocks[1:, block_rank - 1])


def _rolling_medians(x: np.ndarray, size: int, at: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """At indices ``at`` (every point when None): the centered median over ``size`` points (fewer at the ends) and the median of the ``size`` points before (NaN before 5).

    Fewer than n / size points: each median on its own (O(n) in all);
    else one rolling median, whose windows give both, shifted (the centered
    window of t ends at t + size // 2; the trailing one of t ends at t - 1).
    ``x`` has no NaN.
    """
    half = size // 2
    if at is not None and len(at) < len(x) // size:
        centered = np.array([np.median(x[max(0, t - half) : t + half + 1]) for t in at.tolist()])
        trailing = np.array([np.median(x[max(0, t - size) : t]) if t >= 5 else np.nan for t in at.tolist()])
        return centered, trailing
    # past the end the windows are cut short: padded with missing values, which the median skips
    ending = rolling.median(np.concatenate((x, np.full(half, np.nan))), size, min_periods=1)
    centered = ending[half:]
    trailing = np.concatenate(([np.nan], ending[: len(x) - 1]))
    trailing[:5] = np.nan  # at least 5 earlier points
    return (centered, trailing) if at is None else (centered[at], trailing[at])


def _with_loss_instability(run: Run, outlier_steps: list[int]) -> list[int]:
    """Steps of loss-instability starts that an outlier falls within 2 steps of (or inside)."""
    starts = []
    for event in run_instability(run):
        if any(event.start_step - 2 <= s <= event.end_step for s in outlier_steps):
            starts.append(event.start_step)
    return starts


CHECK = Check(
    id="grad_norm_outliers",
    scope=Scope.RUN,
    detect=detect,
    config=Config(),
    module=sys.modules[__name__],
    needs_columns=("grad_norm",),
)
