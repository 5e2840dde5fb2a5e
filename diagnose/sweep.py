"""A study's learning-rate sweep, its best lr (lr*), and its seed swarm.

The Deep Learning Tuning Playbook ("Identifying unstable workloads") starts
every stability question with "do a learning rate sweep and find the best
learning rate lr*". Runs of one study whose configs differ only in ``lr`` (and
``seed``) form one sweep; the seeds of one lr are aggregated by their median
and their spread is kept. Runs with role ``short`` or ``lr_range`` are probes
of the sweep, never members of it. A config key that only some runs log does
not split a sweep, a key equal to the run's lr (``learning_rate``) is the lr,
and runs of one lr must carry distinct logged seeds: otherwise the configs
do not say what tells those runs apart, and they are no sweep. In a
momentum x lr grid each momentum is a sweep; the study reports the one that
holds its best result.

The score of a run is, when every finished run of the sweep has validation
evals, its validation loss at its best checkpoint (the Playbook's optimal
checkpoint selection); otherwise its smoothed training loss at the end. Runs of
different lengths are compared on training loss at the step the shortest
non-diverged run reached, so a longer run is not preferred for its extra steps.
A diverged run (NaN/inf loss at the end, a loss that ended far above its start,
or ``status: diverged``) scores worst (+inf).

The swarm view (Morrison's "bees") groups runs by config, seed aside, and
counts per config how many seeds fit: end within 2x of the study's best final
loss.

Everything here is a pure function of a ``Study``; the checks and
``analyze._study_summary`` share it.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property

import bottleneck as bn  # bn.median: np.median's numbers (the mean of the middle two) at 1/30 of its cost a call
import numpy as np

from . import signal
from .findings import round_sig
from .instability import run_instability
from .model import Run, Study

VALID_METRIC = "valid_loss"
TRAIN_METRIC = "train_loss"
# Roles that probe a sweep rather than belong to it.
PROBE_ROLES = frozenset({"short", "lr_range"})
# Config keys that never make two runs different configs of one sweep.
SEED_KEYS = frozenset({"seed"})

# The smoothed end of a run: the median of its last 5% of logged points (at least 5).
END_FRACTION = 0.05
END_MINIMUM = 5
# A run whose smoothed end loss is above this many times its start has exploded.
EXPLODED_FACTOR = 10.0
# Non-finite losses in the last tenth of a run mean it never came back.
TAIL_FRACTION = 0.1


def _once(find):
    """``find(target)`` found once and kept on the run or study ``target``: the checks and the summary ask
    again and again (~1-3 ms a time on a run of 100k steps), and runs and their tables never change. Kept in
    its ``__dict__``, so a run's travels with it to and from a worker process. Shared: do not modify it."""
    key = f"_sweep_{find.__name__}"

    @functools.wraps(find)
    def kept(target):
        if key not in target.__dict__:
            target.__dict__[key] = find(target)
        return target.__dict__[key]

    return kept


@dataclass(frozen=True)
class RunScore:
    """One run's result in a sweep: lower is better, +inf when it diverged."""

    run: Run
    score: float
    diverged: bool


@dataclass(frozen=True)
class LrPoint:
    """The runs (seeds) of one lr of a sweep and their aggregated score."""

    lr: float
    results: tuple[RunScore, ...]

    @property
    def scores(self) -> np.ndarray:
        return np.array([r.score for r in self.results], dtype=float)

    @cached_property  # asked for again and again while the checks look for lr*
    def score(self) -> float:
        """The median over seeds (+inf when half or more diverged)."""
        return float(bn.median(self.scores))

    @property
    def score_min(self) -> float:
        return float(self.scores.min())

    @property
    def score_max(self) -> float:
        return float(self.scores.max())

    @property
    def diverged(self) -> bool:
        return any(r.diverged for r in self.results)

    @property
    def runs(self) -> list[Run]:
        return [r.run for r in self.results]


@dataclass
class Sweep:
    """Runs that differ only in lr (and seed), one ``LrPoint`` per lr, sorted by lr."""

    study: str
    fixed: dict
    metric: str
    points: list[LrPoint]
    horizon_step: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def lrs(self) -> list[float]:
        return [p.lr for p in self.points]

    @cached_property  # asked for by every check and the summary, and its points never change
    def best(self) -> LrPoint | None:
        """The point with the lowest median score; None when every lr diverged."""
        finite = [p for p in self.points if math.isfinite(p.score)]
        if not finite:
            return None
        return min(finite, key=lambda p: (p.score, p.lr))

    @property
    def best_lr(self) -> float | None:
        best = self.best
        return best.lr if best else None

    def just_above_best(self, max_ratio: float) -> list[LrPoint]:
        """The lrs above lr* and less than ``max_ratio`` times it (an lr 10x above lr* is the next decade)."""
        best = self.best_lr
        if best is None:
            return []
        return [p for p in self.points if best < p.lr and p.lr / best < max_ratio * (1 - 1e-9)]

    @property
    def runs(self) -> list[Run]:
        return [run for p in self.points for run in p.runs]


def members(study: Study) -> list[Run]:
    """The runs that can belong to a sweep: not probes, with an lr and some loss logged."""
    return [
        run
        for run in study.runs
        if run.role not in PROBE_ROLES and run.lr is not None and (run.n_steps or not run.evals.empty)
    ]


@_once
def sweeps(study: Study) -> list[Sweep]:
    """Every group of runs that differ only in lr (and seed), each scored; largest first.

    A config key that only some runs log does not split them (one log
    format records more than another); a key whose value is the run's lr
    (``learning_rate`` beside ``lr``) is the lr. Runs of one lr must be seeds:
    a group where two runs share an lr without distinct logged seeds is not
    a sweep, since its configs do not say what tells those runs apart
    (different models, say).
    """
    found = []
    for fixed, runs in _group(members(study), _sweep_config):
        if _ambiguous(runs, lambda run: run.lr):
            continue
        found.append(_score(study.name, fixed, runs))
    return sorted(found, key=lambda s: (-len(s.points), _best_or_inf(s)))


def _sweep_config(run: Run) -> dict:
    return {k: v for k, v in run.config.items() if k not in SEED_KEYS and not _is_lr(run, k, v)}


def _is_lr(run: Run, key: str, value) -> bool:
    if key == "lr":
        return True
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return is_number and run.lr is not None and math.isclose(value, run.lr, rel_tol=1e-9)


def _group(runs: list[Run], config_of) -> list[tuple[dict, list[Run]]]:
    """Runs of one log format grouped by compatible configs.

    Two configs are compatible when every key both have holds the same value
    and, when both are non-empty, they share at least half of the smaller
    one's keys (so unrelated runs do not merge through their missing keys).
    """
    groups: list[tuple[dict, list[Run]]] = []  # a run joins the first group compatible with it
    # A group whose config has the run's very keys is compatible only when it has the same values: looked up,
    # not compared, so a random search (every run a config of its own) costs n lookups, not n^2 comparisons.
    by_value: dict[tuple, int] = {}  # (format, config items) -> index of the group of exactly that config
    by_keys: dict[tuple, list[int]] = defaultdict(list)  # (format, config keys) -> indices of groups with those keys
    for run in sorted(runs, key=lambda r: -len(config_of(r))):
        config = config_of(run)
        keys = frozenset(config)
        items = (run.format, frozenset((key, repr(value)) for key, value in config.items()))
        same = by_value.get(items)
        others = sorted(index for (fmt, other), indices in by_keys.items() if fmt == run.format and other != keys
                        for index in indices if same is None or index < same)
        found = next((index for index in others if _compatible(groups[index][0], config)), same)
        if found is None:
            found = len(groups)
            groups.append((dict(config), []))
            by_value[items] = found
            by_keys[(run.format, keys)].append(found)
        groups[found][1].append(run)
    order = {id(run): i for i, run in enumerate(runs)}
    return [(shared, sorted(group, key=lambda r: order[id(r)])) for shared, group in groups]


def _compatible(shared: dict, config: dict) -> bool:
    common = [k for k in config if k in shared]
    if any(repr(shared[k]) != repr(config[k]) for k in common):
        return False
    return not shared or not config or 2 * len(common) >= min(len(shared), len(config))


def _ambiguous(runs: list[Run], value_of) -> bool:
    """Two runs with the same value that are not told apart by distinct logged seeds."""
    seeds: dict[str, list] = defaultdict(list)
    for run in runs:
        seeds[repr(value_of(run))].append(run.seed)
    return any(
        len(logged) > 1 and (None in logged or len({repr(seed) for seed in logged}) < len(logged))
        for logged in seeds.values()
    )


def main_sweep(study: Study) -> Sweep | None:
    """The study's lr sweep: the group with at least two lrs whose lr* scores best.

    In a momentum x lr grid each momentum is its own sweep; the one holding the
    study's best result is the one whose lr* the study reports.
    """
    candidates = [s for s in sweeps(study) if len(s.points) >= 2]
    if not candidates:
        return None
    return min(candidates, key=lambda s: (_best_or_inf(s), -len(s.points)))


def diverged(run: Run) -> bool:
    """NaN/inf loss at the end, a loss that ended far above its start, or ``status: diverged``."""
    return run.status == "diverged" or loss_facts(run).blew_up


def end_loss(run: Run, horizon_step: int | None = None) -> float:
    """The smoothed training loss at the end (or at ``horizon_step``); NaN when none is logged."""
    if horizon_step is None or (run.last_step is not None and horizon_step >= run.last_step):
        return loss_facts(run).end
    steps, loss = _update_loss(run)
    return _finite_end(loss[: np.searchsorted(steps, horizon_step, side="right")])


@_once
def best_valid_loss(run: Run) -> float:
    """The validation loss at the run's best checkpoint; NaN when it has none."""
    evals = run.valid_evals()
    values = run.column(evals, "loss", float) if not evals.empty else np.array([])
    values = values[np.isfinite(values)]
    return float(values.min()) if values.size else float("nan")


@dataclass(frozen=True)
class LossFacts:
    """What a study asks of one run's training loss (its applied updates): ``loss_facts``."""

    blew_up: bool  # ``diverged``, the run's status aside
    end: float  # ``end_loss``
    climb: tuple[int, int, float] | None  # ``climb``


@_once
def loss_facts(run: Run) -> LossFacts:
    """The sweep's and the swarm's questions about a run's loss, answered in one pass over it."""
    steps, loss = _update_loss(run)
    keep = np.isfinite(loss)
    finite_steps, finite = (steps, loss) if keep.all() else (steps[keep], loss[keep])  # no copy of a long run
    return LossFacts(
        blew_up=_blew_up(run, steps, loss, finite),
        end=_end_value(finite) if finite.size else float("nan"),
        climb=_climb(finite_steps, finite),
    )


def _update_loss(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """Steps and training losses of the applied updates, as arrays."""
    updates = run.updates()
    return run.column(updates, "step"), run.column(updates, "loss", float)


def _blew_up(run: Run, steps: np.ndarray, loss: np.ndarray, finite: np.ndarray) -> bool:
    """NaN/inf loss in the last tenth of the run, or a smoothed end far above the start."""
    if loss.size == 0:
        return False
    nonfinite = run.nonfinite("loss", steps, loss)
    if nonfinite is not False:
        if finite.size == 0:
            return bool(nonfinite.any())
        tail = max(1, int(round(len(loss) * TAIL_FRACTION)))
        if nonfinite[-tail:].any():
            return True
    if finite.size < 3 or finite.min() <= 0:  # a ratio needs positive losses
        return False
    # log10 of the start and the end only: the medians compared are all that is needed of it
    start = float(bn.median(np.log10(finite[: max(1, int(finite.size * 0.02))])))
    end = finite[-_end_size(finite.size):]
    if np.log10(end.max()) <= start + np.log10(EXPLODED_FACTOR):  # the median of the end is at most its largest
        return False
    return _end_value(np.log10(end)) > start + np.log10(EXPLODED_FACTOR)


def _finite_end(loss: np.ndarray) -> float:
    loss = loss[np.isfinite(loss)]
    if loss.size == 0:
        return float("nan")
    return _end_value(loss)


def _end_size(n: int) -> int:
    return max(END_MINIMUM, int(round(n * END_FRACTION)))


def _end_value(values: np.ndarray) -> float:
    return float(bn.median(values[-_end_size(values.size):]))


def _score(study: str, fixed: dict, runs: list[Run]) -> Sweep:
    blown = {id(run): diverged(run) for run in runs}
    alive = [run for run in runs if not blown[id(run)]]
    has_valid = bool(alive) and all(np.isfinite(best_valid_loss(run)) for run in alive)
    metric = VALID_METRIC if has_valid else TRAIN_METRIC
    notes = []
    horizon = None
    if metric == TRAIN_METRIC:
        lasts = [run.last_step for run in alive if run.last_step is not None]
        if lasts and min(lasts) < max(lasts):
            horizon = min(lasts)
            notes.append(
                f"runs have different lengths ({min(lasts)} to {max(lasts)} steps): "
                f"training losses are compared at step {horizon}"
            )
    by_lr: dict[float, list[RunScore]] = defaultdict(list)
    for run in runs:
        if blown[id(run)]:
            score = float("inf")
        elif metric == VALID_METRIC:
            score = best_valid_loss(run)
        else:
            score = end_loss(run, horizon)
        if not np.isfinite(score):
            score = float("inf")
        by_lr[float(run.lr)].append(RunScore(run=run, score=score, diverged=blown[id(run)]))
    points = [LrPoint(lr=lr, results=tuple(by_lr[lr])) for lr in sorted(by_lr)]
    return Sweep(study=study, fixed=fixed, metric=metric, points=points, horizon_step=horizon, notes=notes)


def _best_or_inf(sweep: Sweep) -> float:
    best = sweep.best
    return best.score if best else float("inf")


# Rises under this are wobbles, not instability (early_instability and loss_spike say info there too).
WOBBLE_RATIO = 1.5


def stable(point: LrPoint) -> bool:
    """No seed of this lr diverged or shows a period where its loss went up instead of down
    (by ``WOBBLE_RATIO`` or more: a noise-free full-batch fit wobbles by 1.1-1.5x at no cost)."""
    return not point.diverged and not any(
        any(e.nonfinite or e.ratio is None or e.ratio >= WOBBLE_RATIO for e in run_instability(run)) or climb(run)
        for run in point.runs
    )


# A run whose smoothed loss ends this many times above the best level it reached has climbed.
CLIMB_FACTOR = 2.0
CLIMB_FRACTION = 0.1


def climb(run: Run) -> tuple[int, int, float] | None:
    """``(best_step, last_step, ratio)`` when the loss ended ``CLIMB_FACTOR`` above its best level.

    The whole-run view of "the loss goes up instead of down": a loss that climbs
    steadily while its minibatch noise grows with it (an lr above the edge of
    stability) can stay within the noise of every window that
    ``diagnose.instability`` compares, yet end many times above its best. Both
    levels are medians over ``CLIMB_FRACTION`` (10%) of the points, so no
    minibatch decides; positive losses only (a ratio needs them).
    """
    return loss_facts(run).climb


def _climb(steps: np.ndarray, loss: np.ndarray) -> tuple[int, int, float] | None:
    """``climb`` of finite losses at ``steps``."""
    if loss.size < 20:
        return None
    lowest = loss.min()
    if lowest <= 0:
        return None
    tail = loss[-signal.window(loss.size, CLIMB_FRACTION, minimum=5):]
    # The best level (a median of medians) is never below the lowest loss: most runs end within 2x of that,
    # most even with the largest loss of the end (which the median of the end is at most).
    if tail.max() / lowest < CLIMB_FACTOR:
        return None
    end = float(bn.median(tail))
    if end / lowest < CLIMB_FACTOR:
        return None
    # Medians of blocks first (at most ~1000 of them), so a run of 10^6 steps costs what one of 10^3 does.
    block = max(1, loss.size // 1000)
    count = loss.size // block
    coarse = signal.row_medians(loss[: count * block].reshape(count, block))
    level = signal.smooth(coarse, signal.window(count, CLIMB_FRACTION, minimum=5))
    best = int(np.argmin(level))
    ratio = end / float(level[best])
    if ratio < CLIMB_FACTOR:
        return None
    return int(steps[best * block]), int(steps[-1]), ratio


def point_summary(point: LrPoint) -> dict:
    """One entry of ``studies[].lrs`` (the hyperparameter-axis plot)."""
    return {
        "lr": point.lr,
        "score": point.score,
        "score_min": point.score_min,
        "score_max": point.score_max,
        "seeds": len(point.results),
        "runs": [r.run.name for r in point.results],
        "run_scores": [r.score for r in point.results],
        "stable": stable(point),
    }


def spread(point: LrPoint) -> float | None:
    """(max - min) / median of the seeds' scores; None for one seed or a diverged seed."""
    if len(point.results) < 2 or not np.isfinite(point.score_max) or point.score == 0:
        return None
    return (point.score_max - point.score_min) / abs(point.score)


def summary(study: Study) -> dict:
    """What ``studies[i]`` of the findings document says about this study's sweep and swarm."""
    sweep = main_sweep(study)
    result: dict = {
        "best_lr": None,
        "metric": None,
        "best_lr_spread": None,
        "lrs": [],
        "unstable_lrs": [],
        "swarm": swarm(study),
    }
    if sweep is None:
        return result
    points = [point_summary(point) for point in sweep.points]
    best = sweep.best
    result.update(
        best_lr=sweep.best_lr,
        metric=sweep.metric,
        best_lr_spread=spread(best) if best else None,
        lrs=points,
        unstable_lrs=[p["lr"] for p in points if not p["stable"]],
        sweep_runs=[run.name for run in sweep.runs],
        sweep_fixed=sweep.fixed,
        horizon_step=sweep.horizon_step,
        sweep_notes=list(sweep.notes),
    )
    return result


# A seed "fits" when its final loss is within this factor of the best final loss of its study.
FIT_FACTOR = 2.0


def swarm(study: Study, fit_factor: float = FIT_FACTOR) -> dict | None:
    """The seed swarm of a study: runs grouped by config (seed aside), with how many seeds fit.

    None when no config has two or more seeds. Axes are the hyperparameters
    that differ between the cells (momentum and lr first). A seed fits when
    its smoothed final training loss is within ``fit_factor`` of the best
    final loss of the whole study (scale-free: the best fit the architecture
    reached on this data sets the bar); a diverged seed never fits.
    """
    cells = seed_cells(study)
    if not any(len(runs) >= 2 for _, runs in cells):
        return None
    finals = {id(run): (float("inf") if diverged(run) else end_loss(run)) for _, runs in cells for run in runs}
    finite = [v for v in finals.values() if np.isfinite(v)]
    best = min(finite) if finite else None
    bar = best * fit_factor if best is not None and best > 0 else best
    axes = _axes([config for config, _ in cells])
    out = []
    for config, runs in cells:
        losses = [finals[id(run)] for run in runs]
        fit = sum(1 for v in losses if bar is not None and np.isfinite(v) and v <= bar)
        known = {key: config.get(key) for key in ("momentum", "lr") if config.get(key) is not None}
        out.append({**known, **{axis: config.get(axis) for axis in axes}, "runs": [r.name for r in runs],
                    "final_losses": losses, "fit": fit})
    return {"axes": axes, "fit_threshold": bar, "best_final_loss": best, "cells": out}


@_once
def seed_cells(study: Study) -> list[tuple[dict, list[Run]]]:
    """Non-probe runs grouped by their config without the seed; lr and momentum as the run reports them.

    Grouped as ``sweeps`` groups (a key that only some runs log does not split
    them); runs of a cell must be seeds (distinct logged seeds), otherwise the
    cell is left out: its config does not say what tells its runs apart.
    """
    runs = [run for run in study.runs if run.role not in PROBE_ROLES and run.n_steps]
    cells = [(config, group) for config, group in _group(runs, _cell_config) if not _ambiguous(group, lambda run: 0)]
    return sorted(cells, key=lambda cell: _cell_order(cell[0]))


def _cell_config(run: Run) -> dict:
    config = {k: v for k, v in run.config.items() if k not in SEED_KEYS and not _is_lr(run, k, v)}
    for key, value in (("lr", run.lr), ("momentum", run.momentum)):
        if value is not None:
            config[key] = value
    return config


def warmup_plan(unstable_lr: float, max_steps: int | None) -> dict:
    """The Tuning Playbook's warmup experiment for a model that becomes unstable at ``unstable_lr``.

    ``base_lr`` = 10x the unstable lr; ``warmup_steps`` swept at orders of
    magnitude (10, 100, 1000, ...), the largest at most 10% of ``max_steps``;
    ``post_warmup_steps`` = 2 x warmup_steps; the new ``max_steps`` is the old
    one plus the warmup; a note when the warmup is over 5% of ``max_steps``.
    """
    limit = 0.1 * max_steps if max_steps else 10_000
    candidates = [w for w in (10, 100, 1_000, 10_000, 100_000, 1_000_000) if w <= limit]
    # 10% of max_steps rounded down to one significant digit (300 for 3000 steps).
    magnitude = 10 ** math.floor(math.log10(limit)) if limit >= 1 else 1
    tenth = int(limit // magnitude * magnitude) if limit >= 1 else 1
    if not candidates or tenth >= 3 * candidates[-1]:
        candidates.append(max(1, tenth))
    experiments = []
    for warmup in candidates:
        experiment = {"warmup_steps": warmup, "post_warmup_steps": 2 * warmup}
        if max_steps:
            experiment["max_steps"] = max_steps + warmup
            if warmup > 0.05 * max_steps:
                experiment["note"] = (
                    f"warmup is {warmup / max_steps:.0%} of max_steps (over 5%): max_steps may need to grow further"
                )
        experiments.append(experiment)
    return {
        "unstable_lr": unstable_lr,
        "base_lr": round_sig(10 * unstable_lr),
        "warmup_steps": candidates,
        "post_warmup_steps": [2 * w for w in candidates],
        "max_steps": [max_steps + w for w in candidates] if max_steps else None,
        "experiments": experiments,
    }


def _axes(configs: list[dict]) -> list[str]:
    keys = {key for config in configs for key in config}
    varying = [key for key in keys if len({repr(config.get(key)) for config in configs}) > 1]
    first = [key for key in ("momentum", "lr") if key in varying]
    return first + sorted(key for key in varying if key not in first)


def _cell_order(config: dict):
    return tuple(
        (0, value) if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, repr(value))
        for value in (config.get("momentum"), config.get("lr"))
    ) + (repr(sorted(config.items(), key=lambda kv: kv[0])),)
