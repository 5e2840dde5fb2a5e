"""Evidence figures as inline SVG: they draw what the checks found, nothing here decides.

Every function takes the series of the runs plus the study summary or one
finding's evidence, and returns a ``Plot`` (a ``data:`` URI SVG with its size
and a caption) or None when the data it needs is absent. Evidence keys are read
defensively (notes/evidence.md): a missing key means that mark is not drawn.
The SVG is written by ``svg`` (a few ms a figure, where matplotlib took 70-120 ms);
curves are decimated first, and a point costs 4-7 bytes: a sweep of 60 runs x 1600
points is 0.4-0.7 MB.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .. import signal
from ..findings import Finding
from ..model import Run, Study
from .plot import Plot, swarm_axes
from .plot import number as _number
from .svg import Axes, Figure

# Points per curve after decimation: ~2.5 per CSS pixel column of a full-width figure's axes (648 px), so
# one-step spikes stay sharp on high-density screens too.
MAX_POINTS = 1600
# Lines drawn per figure: past this, a sweep's runs are thinned to the ones findings name plus a spread.
MAX_LINES = 60

BEST = "#1a7f37"
ABOVE = "#cf222e"
BELOW = "#6e7781"
SHADE = "#ff8182"
MARK = "#8250df"
TEXT = "#1f2328"


def decimate(x: np.ndarray, y: np.ndarray, buckets: int = MAX_POINTS // 2) -> tuple[np.ndarray, np.ndarray]:
    """Keep the min and the max of each of ``buckets`` equal slices, so one-step spikes stay visible.

    Non-finite values are left out first (the slices are slices of the finite points). Each slice keeps its
    least and greatest value: the points' min and max are those of all finite values.
    """
    x_kept, y_kept = _slices(x, y, buckets)
    if np.isfinite(y_kept).all():  # so every value is: a slice's argmin or argmax is its NaN or inf if it has one
        return x_kept, y_kept
    return _slices(*_finite(x, y), buckets)


def _slices(x: np.ndarray, y: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """The min and the max of each of ``buckets`` equal slices of all points, finite or not."""
    n = len(x)
    if n <= 2 * buckets:
        return x, y
    size = -(-n // buckets)
    count = -(-n // size)
    whole = n // size  # slices of full size; the last one may be shorter
    # argmin/argmax of each slice on a reshaped view of the values, not on a padded copy of them
    body = y[:whole * size].reshape(whole, size)
    low, high = body.argmin(axis=1), body.argmax(axis=1)
    if whole < count:
        low, high = np.append(low, y[whole * size:].argmin()), np.append(high, y[whole * size:].argmax())
    keep = (np.stack([np.minimum(low, high), np.maximum(low, high)], axis=1) + size * np.arange(count)[:, None]).ravel()
    keep = keep[np.concatenate([[True], keep[1:] != keep[:-1]])]  # ascending already: a one-point slice once
    return x[keep], y[keep]


def _finite(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The points whose y is finite: ``x`` and ``y`` themselves, not copies, when that is all of them."""
    finite = np.isfinite(y)
    return (x, y) if finite.all() else (x[finite], y[finite])


def _plot(fig: Figure, title: str, caption: str) -> Plot:
    uri, width, height = fig.uri()
    return Plot(title=title, caption=caption, uri=uri, width=width, height=height)


def _figure(width: float = 7.6, height: float = 3.0, ncols: int = 1, nrows: int = 1,
            margins: tuple[float, float, float, float] = (0.7, 0.15, 0.5, 0.3), **kwargs) -> tuple[Figure, np.ndarray]:
    """A figure of fixed margins in inches (left, right, bottom, top) and its grid of axes (``axes[row, col]``)."""
    fig = Figure(width, height, margins, nrows=nrows, ncols=ncols, **kwargs)
    grid = np.empty((nrows, ncols), dtype=object)
    for row, axes in enumerate(fig.axes):
        grid[row, :] = axes
    return fig, grid


def _step_axis(ax: Axes, size: float = 9) -> None:
    ax.set_xlabel("step", integer=True, size=size)


def _series(run: Run, column: str, start: float | None = None, end: float | None = None):
    """``(steps, values)`` of one column, within ``[start, end]`` when given (values may be non-finite)."""
    if column not in run.steps.columns:
        return np.array([], dtype=np.int64), np.array([])
    steps = run.column(run.steps, "step")  # read once per table, whichever figure or check asks first
    values = run.column(run.steps, column, float)
    low = int(np.searchsorted(steps, start, side="left")) if start is not None else 0
    high = int(np.searchsorted(steps, end, side="right")) if end is not None else len(steps)
    return steps[low:high], values[low:high]


def _loss_curve(run: Run, start: float | None = None, end: float | None = None,
                buckets: int = MAX_POINTS // 2) -> tuple[np.ndarray, np.ndarray, float | None, np.ndarray]:
    """A run's training loss as a figure draws it: the decimated points (``decimate``), the level it starts at
    (``_start``) and the steps to mark as NaN/inf (``_nonfinite_steps``), with no pass over a finite loss for them."""
    steps, loss = _series(run, "loss", start, end)
    x, y = _slices(steps, loss, buckets)
    whole = bool(np.isfinite(y).all())  # every value is finite: see decimate
    if whole and not len(run.nan_steps.get("loss", ())):
        marks = steps[:0]
    else:
        marks = _nonfinite_steps(run, "loss", steps, loss)
    if not whole:
        steps, loss = _finite(steps, loss)
        x, y = _slices(steps, loss, buckets)
    return x, y, _start(loss), marks


def _nonfinite_steps(run: Run, column: str, steps: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Steps whose logged value is inf, or ``nan`` written in the log (a missing cell is not marked)."""
    literal_nan = np.isin(steps, run.nan_steps.get(column, np.array([], dtype=np.int64)))
    return steps[np.isinf(values) | literal_nan]


def _start(finite: np.ndarray) -> float | None:
    """The level a curve starts at: the median of its first finite values (up to 20, a twentieth of them)."""
    if not finite.size:
        return None
    # np.median's value, in Python: on up to 20 values its calls cost ~50 us a curve
    head = sorted(finite[: max(1, min(20, finite.size // 20 or 1))].tolist())
    middle = len(head) // 2
    return float(head[middle]) if len(head) % 2 else (head[middle - 1] + head[middle]) / 2


def _loss_limits(curves: list[np.ndarray], starts: list[float | None], clip: bool = True) -> tuple[float, float, bool]:
    """y-limits that keep every healthy curve readable: with ``clip``, a loss that explodes leaves through the top.

    ``curves``: the finite values of each curve, or their decimation (the same min and max); ``starts``: their
    ``_start``.
    """
    shown = [(c, start) for c, start in zip(curves, starts) if c.size]
    if not shown:
        return 0.0, 1.0, False
    low = min(float(c.min()) for c, _ in shown)
    high = max(float(c.max()) for c, _ in shown)
    log = low > 0
    start = max(start for _, start in shown)
    ceiling = start * 10 if log else start + 3 * (abs(start) + 1e-12)
    high = min(high, ceiling) if clip and high > ceiling else high
    if log:
        return low / 1.3, high * 1.3, True
    pad = 0.05 * (high - low or 1.0)
    return low - pad, high + pad, False


def _mark_nonfinite(ax, steps: np.ndarray, color: str) -> bool:
    if steps.size == 0:
        return False
    shown = steps if steps.size <= 200 else steps[np.linspace(0, steps.size - 1, 200).astype(int)]
    ax.plot(shown, np.ones(shown.size), color, marker="x", size=5, line=False, y_axes=True, clip=False, zorder=5)
    return True


def _periods(finding: Finding, run_name: str) -> list[tuple[float, float]]:
    periods = finding.evidence.get("periods") if isinstance(finding.evidence, dict) else None
    if not isinstance(periods, dict):
        return []
    spans = []
    for span in periods.get(run_name) or []:
        if isinstance(span, (list, tuple)) and len(span) == 2 and all(_number(v) is not None for v in span):
            spans.append((float(span[0]), float(span[1])))
    return spans


def _shade(ax, spans: list[tuple[float, float]], label: str | None = None) -> None:
    """Full-height bands over ``spans`` (a one-step span half a step wide, so it shows)."""
    ax.axvspans([(start, max(end, start + 0.5)) for start, end in spans], SHADE, 0.25, label)


def _lr_text(lr: float | None) -> str:
    return "lr ?" if lr is None else f"lr {lr:g}"


# ---------------------------------------------------------------- study plots


def sweep_curves(study: Study, summary: dict, findings: list[Finding]) -> Plot | None:
    """Training loss of every train run, coloured by lr against lr*, unstable periods shaded."""
    runs = [run for run in study.by_role("train") if run.has("loss")]
    if not runs:
        return None
    best_lr = _number(summary.get("best_lr"))
    total = len(runs)
    runs = _thin(runs, {name for f in findings for name in f.runs})
    lrs = sorted({run.lr for run in runs if run.lr is not None})
    fig, axes = _figure(margins=(0.7, 0.15, 0.5, 0.55))
    ax = axes[0, 0]
    curves, starts, labelled, off_scale = [], [], set(), False
    for run in runs:
        color, width, z = _sweep_style(run.lr, best_lr, lrs)
        x, y, start, nonfinite = _loss_curve(run)
        label = _lr_text(run.lr) + (" = lr*" if best_lr is not None and run.lr == best_lr else "")
        ax.plot(x, y, color, width, alpha=0.9, zorder=z, label=label if label not in labelled and len(lrs) <= 12 else None)
        labelled.add(label)
        curves.append(y)
        starts.append(start)
        off_scale |= _mark_nonfinite(ax, nonfinite, color)
        for finding in findings:
            _shade(ax, _periods(finding, run.name), "unstable period" if "unstable period" not in labelled else None)
            if _periods(finding, run.name):
                labelled.add("unstable period")
    low, high, log = _loss_limits(curves, starts)
    if log:
        ax.set_yscale("log")
    ax.set_ylim(low, high)
    _step_axis(ax)
    ax.set_ylabel("training loss")
    ax.legend_above(ncols=7, order=_by_lr)
    title = "Training loss of the lr sweep" if len(lrs) > 1 else "Training loss"
    caption = (
        (f"lr* = {best_lr:g} in green; runs above it in red, below it in grey. " if best_lr is not None
         else "")
        + ("Shaded: the unstable periods the checks found. " if "unstable period" in labelled else "")
        + ("x on the top edge: NaN/inf loss. " if off_scale else "")
        + ("Look for red curves that go up instead of down. " if best_lr is not None and len(lrs) > 1 else "")
        + (f"{len(runs)} of {total} runs drawn: those the findings name, and an even spread of the rest."
           if len(runs) < total else "")
    ).strip() or f"{len(runs)} run{'s' if len(runs) != 1 else ''}; no unstable period was found."
    return _plot(fig, title, caption)


def _by_lr(label: str) -> tuple[float, str]:
    """Legend order: ``lr 0.01`` before ``lr 0.1``; other entries last."""
    parts = label.split()
    try:
        return float(parts[1]), label
    except (IndexError, ValueError):
        return math.inf, label


def _sweep_style(lr: float | None, best_lr: float | None, lrs: list[float]) -> tuple[str, float, int]:
    if best_lr is None or lr is None:
        if lr is None or len(lrs) < 2:
            return "#0969da", 1.0, 2
        position = (math.log(lr) - math.log(lrs[0])) / (math.log(lrs[-1]) - math.log(lrs[0]))
        return _interpolate(_VIRIDIS, 0.1 + 0.8 * position), 1.0, 2
    if math.isclose(lr, best_lr, rel_tol=1e-9):
        return BEST, 2.0, 4
    if lr > best_lr:
        above = [v for v in lrs if v > best_lr]
        shade = (above.index(lr) + 1) / len(above) if lr in above else 1.0
        return _interpolate(_REDS, 0.45 + 0.5 * shade), 1.2, 3
    return BELOW, 0.9, 1


def _thin(runs: list[Run], named: set[str]) -> list[Run]:
    """At most MAX_LINES runs: all that findings name, then an even spread of the rest."""
    if len(runs) <= MAX_LINES:
        return runs
    keep = [run for run in runs if run.name in named][:MAX_LINES]
    rest = [run for run in runs if run.name not in named]
    room = MAX_LINES - len(keep)
    if room > 0 and rest:
        keep += [rest[i] for i in np.unique(np.linspace(0, len(rest) - 1, room).astype(int))]
    return keep


def hyper_axis(summary: dict) -> Plot | None:
    """Best/final loss against lr on log x: lr* marked, unstable lrs marked, seed spread as bars."""
    points = []
    for entry in summary.get("lrs") or []:
        if not isinstance(entry, dict):
            continue
        lr, score = _number(entry.get("lr")), _number(entry.get("score"))
        if lr is None or lr <= 0:
            continue
        points.append((lr, score, _number(entry.get("score_min")), _number(entry.get("score_max")),
                       entry.get("stable", True) is not False))
    if len(points) < 2:
        return None
    unstable = {v for v in (_number(u) for u in summary.get("unstable_lrs") or []) if v is not None}
    best_lr = _number(summary.get("best_lr"))
    metric = str(summary.get("metric") or "loss").replace("_", " ")
    fig, axes = _figure(width=5.2, height=3.2, margins=(0.7, 0.15, 0.5, 0.45))
    ax = axes[0, 0]
    lrs = np.array([p[0] for p in points])
    scores = np.array([p[1] if p[1] is not None else np.nan for p in points])
    ax.plot(lrs, scores, "#57606a", 1.0)
    no_score = False
    for lr, score, low, high, stable in points:
        bad = (not stable) or any(math.isclose(lr, u, rel_tol=1e-9) for u in unstable)
        color = ABOVE if bad else "#0969da"
        if score is None:  # diverged: the sweep scores it +inf
            ax.plot([lr], [1], ABOVE, marker="x", size=7, line=False, y_axes=True, clip=False, zorder=5,
                    label=None if no_score else "no score (diverged)")
            no_score = True
            continue
        if low is not None and high is not None and high > low:
            ax.plot([lr, lr], [low, high], color, 2.5, alpha=0.35)
        ax.plot([lr], [score], color, marker="X" if bad else "o", size=7 if bad else 5, line=False, zorder=4)
    if best_lr is not None:
        ax.axvline(best_lr, BEST, 1.2, "--", zorder=1)
        at_right = best_lr >= float(lrs.max())
        ax.text(best_lr, 0.98, f"lr* = {best_lr:g}" + ("" if at_right else " "), 8, BEST,
                ha="right" if at_right else "left", va="top", x_data=True)
    ax.set_xscale("log")
    finite = scores[np.isfinite(scores)]
    if finite.size and (finite > 0).all():
        ceiling = float(np.min(finite)) * 1e3
        ax.set_yscale("log")
        if finite.max() > ceiling:
            ax.set_ylim(high=ceiling)
            off = lrs[scores > ceiling]
            ax.plot(off, np.ones(off.size), ABOVE, marker="^", line=False, y_axes=True, clip=False, zorder=5,
                    label="off scale")
    ax.set_xlim(float(lrs.min()) / 1.4, float(lrs.max()) * 1.4)
    ax.set_xlabel("learning rate")
    ax.set_ylabel(metric)
    ax.legend_entry("unstable", ABOVE, marker="X", size=7)
    ax.legend_entry("stable", "#0969da", marker="o", size=5)
    ax.legend_above(ncols=4)
    caption = (
        f"{metric.capitalize()} of each lr (bars: spread over seeds); red X: lrs whose runs were unstable. "
        "When lr* sits right next to the first unstable lr, instability is what limits the learning rate."
    )
    return _plot(fig, "Hyperparameter axis: loss vs learning rate", caption)


def swarm_grid(study: Study, summary: dict) -> Plot | None:
    """Small multiples momentum x lr (seed 000), one line per seed, shared axes."""
    shape = swarm_axes(summary)
    if shape is None:
        return None
    cells, momenta, lrs = shape
    by_name = {run.name: run for run in study.runs}
    fig, axes = _figure(width=min(7.6, 1.9 * len(lrs) + 0.6), height=1.45 * len(momenta) + 0.5,
                        nrows=len(momenta), ncols=len(lrs), share=True)
    curves, starts = [], []
    for cell in cells:
        momentum, lr = _number(cell.get("momentum")), _number(cell.get("lr"))
        if momentum is None or lr is None:
            continue
        ax = axes[momenta.index(momentum), lrs.index(lr)]
        for i, name in enumerate(cell.get("runs") or []):
            run = by_name.get(name)
            if run is None or not run.has("loss"):
                continue
            x, y, start, _ = _loss_curve(run, buckets=200)
            ax.plot(x, y, _SEED_COLORS[i % len(_SEED_COLORS)], 0.8, alpha=0.8)
            curves.append(y)
            starts.append(start)
        fit = cell.get("fit")
        if isinstance(fit, int) and cell.get("runs"):
            ax.text(0.97, 0.93, f"{fit}/{len(cell['runs'])} fit", 7, TEXT, ha="right", va="top")
    low, high, log = _loss_limits(curves, starts)
    for (row, col), ax in np.ndenumerate(axes):
        if log:
            ax.set_yscale("log")
        ax.set_ylim(low, high)
        if row == 0:
            ax.set_title(f"lr {lrs[col]:g}", 8)
        if col == 0:
            ax.set_ylabel(f"momentum {momenta[row]:g}", 8)
        if row == len(momenta) - 1:
            _step_axis(ax, 8)
    caption = (
        "Training loss of each seed, rows by momentum, columns by lr (seed 000's swarm grid). "
        "Higher lr and higher momentum both speed fitting: the effective step is lr/(1-momentum)."
    )
    return _plot(fig, "Swarm: momentum x learning rate", caption)


_SEED_COLORS = ("#0969da", "#bf3989", "#1a7f37", "#9a6700", "#8250df", "#cf222e", "#57606a", "#116329")


# matplotlib's colormaps as evenly spaced colours: Reds is made linear between these nine; viridis, read
# linearly between these 17, is within 6/255 of matplotlib's on every channel.
_VIRIDIS = ("#440154", "#48186a", "#472d7b", "#424086", "#3b528b", "#33638d", "#2c728e", "#26828e", "#21918c",
            "#1fa088", "#28ae80", "#3fbc73", "#5ec962", "#84d44b", "#addc30", "#d8e219", "#fde725")
_REDS = ("#fff5f0", "#fee0d2", "#fcbba1", "#fc9272", "#fb694a", "#ee3a2c", "#ca181d", "#a30f15", "#67000d")


@functools.cache  # a sweep's few lrs, in figure after figure
def _interpolate(colors: tuple[str, ...], position: float) -> str:
    """The colour at ``position`` (0-1) of a colormap given as evenly spaced hex colours."""
    where = min(max(position, 0.0), 1.0) * (len(colors) - 1)
    i = min(int(where), len(colors) - 2)
    a, b = (np.array([int(c[k:k + 2], 16) for k in (1, 3, 5)]) for c in colors[i:i + 2])
    return "#" + "".join(f"{round(v):02x}" for v in a + (b - a) * (where - i))


def gap_curve(run: Run, finding: Finding | None) -> Plot | None:
    """valid - train loss over the evaluations, the overfitting onset marked."""
    valid = run.valid_evals()
    if valid.empty or np.isnan(run.column(valid, "loss", float)).all():
        return None
    valid_steps, valid_loss = run.column(valid, "step"), run.column(valid, "loss", float)
    split_name = finding.evidence.get("split") if finding else None
    if isinstance(split_name, str):
        evals = run.evals
        chosen = np.array([str(s).lower() == split_name.lower() for s in run.column(evals, "split").tolist()], bool)
        if chosen.any():  # that split's rows, in the log's order
            valid_steps, valid_loss = run.column(evals, "step")[chosen], run.column(evals, "loss", float)[chosen]
    steps, valid_loss = _eval_points(valid_steps, valid_loss)
    train = run.train_evals()
    train_steps, train_values = _eval_points(run.column(train, "step"), run.column(train, "loss", float))
    if len(train_steps) >= 2:
        train_loss = np.interp(steps, train_steps, train_values)
        source = "train evaluations"
    elif run.has("loss"):
        train_loss = _trend_at(run, steps)
        source = "training loss (rolling median)"
    else:
        return None
    gap_steps, gap = _evidence_gap(finding)
    if gap_steps is None:  # no check computed it: the plain difference at the eval steps
        gap_steps, gap = steps, valid_loss - train_loss
    fig, axes = _figure(ncols=2, width=7.6, height=2.8)
    left, right = axes[0]
    left.plot(steps, valid_loss, "#0969da", 1.2, label="valid")
    left.plot(steps, train_loss, "#57606a", 1.2, label=f"train ({source})")
    if (valid_loss > 0).all() and (train_loss > 0).all():
        left.set_yscale("log")
    _step_axis(left)
    left.set_ylabel("loss")
    left.legend_inside()
    right.plot(gap_steps, gap, ABOVE, 1.4)
    right.axhline(0, "#8c959f", 0.8)
    _step_axis(right)
    right.set_ylabel("valid - train")
    onset = _number(finding.evidence.get("onset_step")) if finding else None
    if onset is not None:
        for ax in (left, right):
            ax.axvline(onset, MARK, 1.2, "--")
        right.text(onset, 1, f"onset {onset:g}", 8, MARK, ha="left", va="top", x_data=True)
    caption = (
        f"{run.name}: validation and training loss (left) and the generalization gap valid - train (right)"
        + (", the overfitting onset dashed. " if onset is not None else ". ")
        + "A gap that widens while training loss still falls is overfitting (Smith 2018)."
    )
    return _plot(fig, "Generalization gap", caption)


def _eval_points(steps: np.ndarray, loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The evaluations whose loss is finite, the last of each step, in their order: pandas'
    ``drop_duplicates("step", keep="last")`` of them, in numpy (pandas' row selections cost ~1 ms a figure)."""
    finite = np.isfinite(loss)
    if not finite.all():
        steps, loss = steps[finite], loss[finite]
    if len(steps) > 1 and not (steps[1:] > steps[:-1]).all():  # rising steps repeat none
        last = len(steps) - 1 - np.unique(steps[::-1], return_index=True)[1]
        keep = np.zeros(len(steps), dtype=bool)
        keep[last] = True
        steps, loss = steps[keep], loss[keep]
    return steps, loss


def _evidence_gap(finding: Finding | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The gap curve the overfitting check computed (``evidence["gap"]``: ``[[step, gap], ...]``), if any."""
    pairs = finding.evidence.get("gap") if finding else None
    if not isinstance(pairs, list):
        return None, None
    points = [(float(p[0]), float(p[1])) for p in pairs
              if isinstance(p, (list, tuple)) and len(p) == 2 and all(_number(v) is not None for v in p)]
    if len(points) < 2:
        return None, None
    steps, gap = zip(*points)
    return np.array(steps), np.array(gap)


def _trend_at(run: Run, steps: np.ndarray) -> np.ndarray:
    """``signal.smooth`` of the training loss at ``steps`` (interpolated), worked out only where it is read."""
    train_steps, loss = _finite(*_series(run, "loss"))
    if not len(loss):
        return np.interp(steps, train_steps, loss)
    # np.interp reads the two points around each step, or only the one it falls on: the trend is needed there only.
    after = np.searchsorted(train_steps, steps, side="right")
    on = train_steps[np.maximum(after - 1, 0)] == steps
    needed = np.unique(np.clip(np.concatenate([after - 1, after[~on]]), 0, len(loss) - 1))
    half = signal.window(len(loss), 0.02) // 2
    # the centred window, cut short at both ends: whole windows in one call, the few near the ends one by one
    inside = (needed >= half) & (needed < len(loss) - half)
    trend = np.empty(len(needed))
    if inside.any():
        windows = np.lib.stride_tricks.sliding_window_view(loss, 2 * half + 1)
        # the middle value of each odd, finite window: np.median's, without its NaN check and mean (1/6 of the time)
        trend[inside] = np.partition(windows[needed[inside] - half], half, axis=1)[:, half]
    trend[~inside] = [np.median(loss[max(0, i - half):i + half + 1]) for i in needed[~inside]]
    return np.interp(steps, train_steps[needed], trend)


def lr_range(run: Run, finding: Finding | None) -> Plot | None:
    """Loss against the growing lr of an LR range test, lr_min and lr_max marked."""
    if not run.has("loss") or not run.has("lr"):
        return None
    _, loss = _series(run, "loss")
    _, lrs = _series(run, "lr")
    shown = np.isfinite(loss) & np.isfinite(lrs) & (lrs > 0)
    if shown.sum() < 2:
        return None
    fig, axes = _figure(width=5.6, height=3.2, margins=(0.7, 0.15, 0.5, 0.6))
    ax = axes[0, 0]
    order = np.argsort(lrs[shown], kind="stable")
    x, y = decimate(lrs[shown][order], loss[shown][order])
    ax.plot(x, y, "#0969da", 1.1)
    ax.set_xscale("log")
    low, high, log = _loss_limits([loss[shown]], [_start(loss[shown])])
    if log:
        ax.set_yscale("log")
    ax.set_ylim(low, high)
    evidence = finding.evidence if finding else {}
    marks = (("lr_min", "lr_min", "#0969da"), ("lr_max", "lr_max", BEST), ("blowup_lr", "blows up", ABOVE))
    row = 0
    for key, label, color in marks:
        value = _number(evidence.get(key))
        if value is not None and value > 0:
            ax.axvline(value, color, 1.2, "--")
            ax.text(value, 1.0 + 0.07 * row, f"{label} {value:.2g}", 8, color, ha="center", va="bottom", x_data=True)
            row += 1
    ax.set_xlabel("learning rate (grows every step)")
    ax.set_ylabel("training loss")
    caption = (
        f"{run.name}: LR range test. Train between lr_min and lr_max (a cyclical or 1cycle schedule); "
        "the loss falls fastest between them and blows up past lr_max (Smith 2018)."
    )
    return _plot(fig, "LR range test", caption)


def short_run(run: Run, finding: Finding | None) -> Plot | None:
    """The abbreviated run at ~2x lr*, every step's loss and its evaluations, unstable periods shaded."""
    if not run.has("loss"):
        return None
    fig, axes = _figure(margins=(0.7, 0.15, 0.5, 0.45))
    ax = axes[0, 0]
    x, y, start, nonfinite = _loss_curve(run)
    ax.plot(x, y, "#57606a", 0.9, label="training loss")
    curves, starts = [y], [start]
    valid = run.valid_evals()
    if not valid.empty and valid["loss"].notna().any():
        vs, vl = valid["step"].to_numpy(), valid["loss"].to_numpy(dtype=float)
        vx, vy = decimate(vs, vl)
        ax.plot(vx, vy, "#0969da", 1.2, label=f"valid ({len(vs)} evaluations)")
        curves.append(vy)
        starts.append(_start(_finite(vl, vl)[1]))
    if finding is not None:
        _shade(ax, _periods(finding, run.name), "unstable period")
        recovery = _number(finding.evidence.get("recovery_step"))
        if recovery is not None:
            ax.axvline(recovery, BEST, 1.2, "--", label=f"recovered at {recovery:g}")
    off_scale = _mark_nonfinite(ax, nonfinite, ABOVE)
    low, high, log = _loss_limits(curves, starts)
    if log:
        ax.set_yscale("log")
    ax.set_ylim(low, high)
    _step_axis(ax)
    ax.set_ylabel("loss")
    ax.legend_above()
    caption = (
        f"{run.name} ({_lr_text(run.lr)}): the short probe run, evaluated every step, that catches early "
        "instability followed by recovery (Tuning Playbook)."
        + (" x on the top edge: NaN/inf loss." if off_scale else "")
    )
    return _plot(fig, "Short run at ~2x lr*", caption)


def grad_norms(run: Run, finding: Finding | None) -> Plot | None:
    """Grad norm vs step with the clip threshold, and the histogram of grad norms with its 90th percentile."""
    if not run.has("grad_norm"):
        return None
    steps, norms = _series(run, "grad_norm")
    positive = np.isfinite(norms) & (norms > 0)
    if positive.sum() < 2:
        return None
    shown_steps, shown = (steps, norms) if positive.all() else (steps[positive], norms[positive])
    evidence = finding.evidence if finding else {}
    threshold = _number(evidence.get("threshold"))
    clip_norm = _number(evidence.get("clip_norm")) or _number(run.config.get("clip_norm"))
    percentile = _number(evidence.get("percentile")) or 90
    window = evidence.get("window")
    fig, axes = _figure(ncols=2, width=7.6, height=3.0, margins=(0.7, 0.15, 0.5, 0.55), width_ratios=[2.2, 1])
    left, right = axes[0]
    x, y = decimate(shown_steps, shown)
    left.plot(x, y, "#57606a", 0.7)
    left.set_yscale("log")
    outliers = [s for s in (evidence.get("outlier_steps") or []) if _number(s) is not None]
    if outliers:
        index = np.searchsorted(steps, outliers).clip(0, len(steps) - 1)
        left.plot(steps[index], norms[index], ABOVE, marker="o", size=3.5, line=False, label="outliers", zorder=4)
    if isinstance(window, (list, tuple)) and len(window) == 2 and all(_number(v) is not None for v in window):
        left.axvspans([(float(window[0]), float(window[1]))], "#ddf4ff", 0.6, "window used", zorder=0)
    lines = []
    if threshold is not None and threshold > 0:
        lines.append((threshold, f"recommended clip {threshold:.3g} (p{percentile:g})", MARK))
    if clip_norm is not None and clip_norm > 0:
        lines.append((clip_norm, f"current clip_norm {clip_norm:.3g}", ABOVE))
    ordered = np.sort(shown)  # the histogram's counts and the percentile, from one sort
    if not lines:
        p90 = float(np.percentile(ordered, 90))
        lines.append((p90, f"90th percentile {p90:.3g}", MARK))
    for value, label, color in lines:
        left.axhline(value, color, 1.1, "--", label=label)
    _step_axis(left)
    left.set_ylabel("grad norm (before clipping)")
    left.legend_above(ncols=2)
    low, high = np.log10(ordered[[0, -1]])  # the least and the greatest log of a norm
    bins = np.logspace(low, high + 1e-9, 40)
    # np.histogram's counts, as it finds them on sorted values: every bin closed on the left, the last on both sides
    ends = np.concatenate([ordered.searchsorted(bins[:-1], "left"), ordered.searchsorted(bins[-1:], "right")])
    right.stairs(np.diff(ends), bins, "#8c959f")
    right.set_xscale("log")
    for value, _, color in lines:
        right.axvline(value, color, 1.1, "--")
    right.set_xlabel("grad norm")
    right.set_ylabel("updates")
    fraction = _number(evidence.get("clipped_fraction"))
    caption = (
        f"{run.name}: gradient norm of every update and its histogram. "
        + (f"Clipping at the dashed line would clip {fraction:.0%} of updates. " if fraction is not None
           else "")
        + "Rare outliers far above the bulk cause spurious instability; clip at about the 90th percentile "
        "(Tuning Playbook)."
    )
    return _plot(fig, "Gradient norms", caption)


# ---------------------------------------------------------------- finding plots


def finding_zoom(runs: list[Run], finding: Finding) -> Plot | None:
    """The finding's runs on its steps (with a margin): loss, shaded periods, recovery and marks."""
    runs = [run for run in runs if run.has("loss")][:8]
    if not runs:
        return None
    start, end = _zoom_window(runs, finding)
    fig, axes = _figure(width=6.4, height=2.7, margins=(0.7, 0.15, 0.5, 0.55))
    ax = axes[0, 0]
    curves, starts, off_scale = [], [], False
    for i, run in enumerate(runs):
        x, y, level, nonfinite = _loss_curve(run, start, end)
        color = _SEED_COLORS[i % len(_SEED_COLORS)]
        ax.plot(x, y, color, 1.1, label=f"{run.name} ({_lr_text(run.lr)})")
        curves.append(y)
        starts.append(level)
        off_scale |= _mark_nonfinite(ax, nonfinite, color)
        _shade(ax, [(max(a, start), min(b, end)) for a, b in _periods(finding, run.name) if b >= start and a <= end],
               "unstable period" if i == 0 else None)
    if finding.steps:
        for step in finding.steps:
            ax.axvline(step, "#8c959f", 1.0, ":")
    recovery = _number(finding.evidence.get("recovery_step"))
    if recovery is not None and start <= recovery <= end:
        ax.axvline(recovery, BEST, 1.2, "--", label=f"recovered at {recovery:g}")
    onset = _number(finding.evidence.get("onset_step"))
    if onset is not None and start <= onset <= end:
        ax.axvline(onset, MARK, 1.2, "--", label=f"onset {onset:g}")
    low, high, log = _loss_limits(curves, starts, clip=False)  # the zoom is the evidence: show its peak
    if log:
        ax.set_yscale("log")
    ax.set_ylim(low, high)
    ax.set_xlim(start, end)
    _step_axis(ax)
    ax.set_ylabel("training loss")
    if len(runs) <= 6:
        ax.legend_above(ncols=3)
    what = f"steps {start:g}-{end:g}" + (" (dotted: the finding's first and last step)" if finding.steps else "")
    caption = f"Zoom on {what}." + (" x on the top edge: NaN/inf loss." if off_scale else "")
    return _plot(fig, "Where it shows", caption)


def _zoom_window(runs: list[Run], finding: Finding) -> tuple[float, float]:
    first = min(int(run.column(run.steps, "step")[0]) for run in runs)
    last = max(int(run.column(run.steps, "step")[-1]) for run in runs)
    if not finding.steps:
        return first, max(last, first + 1)
    start, end = finding.steps
    margin = max(10, (end - start) // 2, (last - first) // 50)
    low, high = max(first, start - margin), min(last, end + margin)
    return (low, high) if high > low else (low - 1, low + 1)
