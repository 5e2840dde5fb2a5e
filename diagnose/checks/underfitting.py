"""Training ended far from converged: the loss barely moved (lr too small) or was still clearly falling.

Detects:
Two kinds, on the training loss: ``barely_moved``, the loss fell by less
than ``min_drop`` (10%) from the start of the run to its end (lr too small);
``still_falling``, the loss was still falling significantly over the last
``tail_fraction`` (20%) of the run, by at least ``min_tail_share`` (25%) of
its whole drop, while the lr was not annealed at the end and the run was
not recovering from a loss spike.

Why:
Smith, "A disciplined approach..." (seed 001): look at the training and
test loss curves for clues of underfitting; a learning rate that is too
small trains slowly (and even overfits), and the LR range test finds the
range where the loss falls fast. A run that stops while its loss still
falls steeply is wasted: more steps (or a larger lr) would improve it
cheaply. The Tuning Playbook (seed 002) asks the same of a sweep: the best
lr must not be limited by a too-small budget.

Algorithm:
On log10 of the applied updates' training loss (the loss itself when it is
not positive); runs with NaN/inf are left to divergence, runs under
``min_points`` (50) and ``short``/``lr_range`` runs are skipped. Start and
end level = the median of the first and of the last 10% of the points (at
least 5): robust to minibatch noise. ``barely_moved``: 1 - end/start <
``min_drop`` (0.1: the corpus' tiny-lr runs move 0.4-6%, its trained runs
20-99%), unless the run's first logged step is past 10% of its last (it
was resumed from a checkpoint, so its start is not the initial loss).
``still_falling``: the least-squares slope through the medians of up to
30 bins of the last 20% has a 95% interval entirely below 0, and projects
a drop over that tail of at least 25% of the start-to-end drop (a converging or
power-law curve loses about 10% of its log-drop in its last fifth, a
straight decline 20%+); not when the logged lr ended below half its peak
(a decaying schedule makes the loss fall at the end by design) nor when an
instability period ended in the last 40% (the fall is a recovery).
Severity: warning for ``barely_moved``, info for ``still_falling``.

Example:
An MLP classifier, plain SGD at lr 1e-4: the loss goes 1.61 -> 1.60 in
600 steps (0.4% drop): one warning, kind ``barely_moved``; recommend lr
1e-3 (10x) or an LR range test. The same net at lr 0.02, batch 256,
stopped at step 300 while falling straight: info, ``still_falling``,
max_steps 600.

Recommends:
``barely_moved``: ``lr`` with ``value`` = 10x the run's lr (one decade, as a
sweep steps), and an LR range test (Smith) to find the range. ``still_falling``:
``more_steps`` with ``max_steps`` = 2x the run's steps (the loss was falling
by X per step at the end).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from ..findings import Finding, Recommendation, Severity, round_sig
from ..instability import run_instability, run_loss
from ..model import Run
from ..signal import median
from .registry import Check, Scope


@dataclass(frozen=True)
class Config:
    min_drop: float = 0.1
    min_points: int = 50
    tail_fraction: float = 0.2
    min_tail_share: float = 0.25


def applies(run: Run) -> str | None:
    if run.role == "lr_range":
        return "an LR range test is not trained to converge"
    if run.role == "short":
        return "a short run is not trained to converge"
    return None


def detect(run: Run, config: Config) -> list[Finding]:
    steps, loss = run_loss(run)
    if len(loss) < config.min_points or not np.isfinite(loss).all():
        return []  # a run with NaN/inf is divergence's, not underfitting's
    log_space = bool(loss.min() > 0)
    # only the medians are taken to log space (log10 is monotone, and most of the cost on a long run)
    to_x = np.log10 if log_space else None
    to_loss = (lambda v: 10**v) if log_space else float
    decile = max(5, len(loss) // 10)
    start, end = map(float, median(np.array((loss[:decile], loss[-decile:])), to_x))  # both in one pass of calls
    relative_drop = 1 - to_loss(end) / to_loss(start) if to_loss(start) > 0 else None

    resumed = steps[0] > 0.1 * steps[-1]  # picked up from a checkpoint: its start is not the init loss
    if relative_drop is not None and abs(relative_drop) < config.min_drop and not resumed:
        return [_barely_moved(run, steps, to_loss(start), to_loss(end), relative_drop, config)]

    total = start - end
    if total <= 0 or _annealed(run):  # (an annealed run's falling tail needs no slope: its lr explains it)
        return []
    tail_from = int(len(loss) * (1 - config.tail_fraction))
    slope, high = _tail_slope(steps[tail_from:], loss[tail_from:], to_x, config.min_tail_share * total)
    tail = -slope * (steps[-1] - steps[tail_from])
    if high >= 0 or tail < config.min_tail_share * total or _recovering(run, steps, config):
        return []
    tail_drop = 1 - 10**-tail if log_space else None
    return [_still_falling(run, steps, tail_from, tail / total, slope, to_loss(end), tail_drop)]


def _tail_slope(steps: np.ndarray, loss: np.ndarray, to_x, least_drop: float = 0.0) -> tuple[float, float]:
    """Least-squares slope through the medians of ``to_x`` of up to 30 bins of the tail, and its 95% upper bound;
    (0.0, inf), as for a flat tail, when the fit surely projects a drop under ``least_drop`` over the tail.

    The bin medians shed minibatch outliers; the bound is slope + t(0.975) x standard error.
    """
    bins = min(30, len(loss))
    centers = _per_bin(steps, bins, lambda rows: _mean(rows, dtype=float))
    medians = _per_bin(loss, bins, lambda rows: median(rows, to_x))
    width = _width(centers) if bins >= 4 else 0.0
    if width == 0:
        return 0.0, float("inf")
    # The slope in closed form, ~10x cheaper than polyfit's and the same to rounding (under ~3e-13 x the medians'
    # range over the centers', which the second condition keeps under 3e-4 of the fall asked for): a fall under half
    # of it (most runs: a fifth) is under it whatever the fit's rounding.
    spread = centers - _mean(centers)
    fall = -float(spread @ (medians - _mean(medians))) / float(spread @ spread)
    least_fall = least_drop / float(steps[-1] - steps[0])
    if fall < 0.5 * least_fall and least_fall > 1e-9 * _width(medians) / width:
        return 0.0, float("inf")
    slope, intercept = np.polyfit(centers, medians, 1)
    residual = medians - (slope * centers + intercept)
    error = np.sqrt(residual @ residual / (bins - 2) / ((centers - centers.mean()) ** 2).sum())
    return float(slope), float(slope + 2.05 * error)


# _mean and _width: numpy's numbers without the Python wrappers of .mean() and np.ptp, ~10 us a call on a short
# run (cold, between reads), where the whole fit costs ~100 us.
def _mean(values: np.ndarray, dtype=None) -> np.ndarray:
    """``values.mean(axis=-1)``: a float sum over the count."""
    return np.add.reduce(values, axis=-1, dtype=dtype) / values.shape[-1]


def _width(values: np.ndarray) -> float:
    """``np.ptp(values)``."""
    return float(np.maximum.reduce(values) - np.minimum.reduce(values))


def _per_bin(values: np.ndarray, bins: int, reduce) -> np.ndarray:
    """``reduce`` (over the last axis) of each of np.array_split's ``bins`` bins (the first len % bins one longer)."""
    size, longer = divmod(len(values), bins)
    cut = longer * (size + 1)
    rows = (values[:cut].reshape(longer, size + 1), values[cut:].reshape(bins - longer, size))
    return np.concatenate([reduce(block) for block in rows])


def _recovering(run: Run, steps: np.ndarray, config: Config) -> bool:
    """The tail's fall is the way back from an instability (loss spike), not unfinished training."""
    since = steps[int(len(steps) * (1 - 2 * config.tail_fraction))]
    return any(event.end_step >= since for event in run_instability(run))


def _annealed(run: Run) -> bool:
    if not run.has("lr"):
        return False
    lrs = run.column(run.updates(), "lr", float)
    finite = np.isfinite(lrs)
    if not finite.all():
        lrs = lrs[finite]
    return lrs.size > 0 and lrs[-1] < 0.5 * lrs.max()


def _barely_moved(run: Run, steps, start: float, end: float, drop: float, config: Config) -> Finding:
    values = {"value": round_sig(run.lr * 10)} if run.lr else {}
    return Finding(
        check="underfitting",
        severity=Severity.WARNING,
        study=run.study,
        runs=(run.name,),
        steps=(int(steps[0]), int(steps[-1])),
        title=f"{run.name}: the loss barely moved ({drop:.1%} in {len(steps)} logged steps): the lr is probably too small",
        detail=(
            f"The smoothed training loss went {start:.4g} -> {end:.4g} ({drop:.1%}, under {config.min_drop:.0%})"
            + (f" at lr {run.lr:g}." if run.lr else ".")
        ),
        evidence={"kind": "barely_moved", "relative_drop": drop, "start_loss": start, "end_loss": end},
        recommendation=Recommendation(
            action="lr",
            values=values,
            why=(
                (f"try lr {values['value']:g} (10x, one decade up) " if values else "raise the lr ")
                + "or, better, run an LR range test (Smith 2018): the loss falls fastest between lr_min and lr_max"
            ),
        ),
    )


def _still_falling(run: Run, steps, tail_from: int, share: float, slope: float, end: float, tail_drop) -> Finding:
    last = int(steps[-1])
    more = 2 * (run.max_steps or last + 1)
    per_step = f"{slope:.3g} decades per step" if tail_drop is not None else f"{slope:.3g} per step"
    fell = f"fell {tail_drop:.0%}" if tail_drop is not None else "kept falling"
    return Finding(
        check="underfitting",
        severity=Severity.INFO,
        study=run.study,
        runs=(run.name,),
        steps=(int(steps[tail_from]), last),
        title=f"{run.name}: still clearly falling at the end: the loss {fell} over the last fifth of the run",
        detail=(
            f"Over steps {int(steps[tail_from])}-{last} the training loss kept falling ({per_step}, a trend line "
            f"through binned medians), as much as {share:.0%} of its start-to-end drop, to {end:.4g}: the run "
            "was stopped before it converged."
        ),
        evidence={"kind": "still_falling", "slope_per_step": slope, "tail_share": share, "tail_drop": tail_drop,
                  "end_loss": end},
        recommendation=Recommendation(
            action="more_steps",
            values={"max_steps": more},
            why=f"the loss was still falling at the end: train about 2x longer ({more} steps), or raise the lr",
        ),
    )


CHECK = Check(
    id="underfitting",
    scope=Scope.RUN,
    detect=detect,
    config=Config(),
    module=sys.modules[__name__],
    applies=applies,
)
