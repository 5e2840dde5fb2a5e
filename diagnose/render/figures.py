"""Evidence plots as inline SVG: matplotlib draws, nothing here decides."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..model import Study  # noqa: E402

# Points per curve after decimation: about two per pixel column of a figure.
MAX_POINTS = 1600


def decimate(x: np.ndarray, y: np.ndarray, buckets: int = MAX_POINTS // 2) -> tuple[np.ndarray, np.ndarray]:
    """Keep the min and the max of each of ``buckets`` equal slices, so one-step spikes stay visible."""
    n = len(x)
    if n <= 2 * buckets:
        return x, y
    edges = np.linspace(0, n, buckets + 1).astype(int)
    keep = []
    for start, end in zip(edges[:-1], edges[1:]):
        chunk = y[start:end]
        finite = np.isfinite(chunk)
        if not finite.any():
            keep.append(start)
            continue
        idx = np.flatnonzero(finite)
        low = idx[np.argmin(chunk[idx])] + start
        high = idx[np.argmax(chunk[idx])] + start
        keep.extend(sorted({low, high}))
    keep = np.asarray(keep)
    return x[keep], y[keep]


def to_svg(fig) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buffer.getvalue()
    return svg[svg.index("<svg"):]


def study_loss(study: Study) -> str | None:
    """Training loss of every run in the study, log scale when all losses are positive."""
    runs = [run for run in study.runs if run.has("loss")]
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.6))
    positive = True
    for run in runs:
        steps = run.steps["step"].to_numpy()
        loss = run.steps["loss"].to_numpy(dtype=float)
        shown = np.isfinite(loss)
        positive &= bool((loss[shown] > 0).all())
        x, y = decimate(steps[shown], loss[shown])
        ax.plot(x, y, linewidth=1, label=_label(run))
    if positive:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    if len(runs) <= 12:
        ax.legend(fontsize=7, loc="best")
    return to_svg(fig)


def _label(run) -> str:
    lr = f" lr={run.lr:g}" if run.lr is not None else ""
    return f"{run.name}{lr}"
