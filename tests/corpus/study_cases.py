"""Labelled study-level cases: lr sweeps, short 2x-lr* runs, LR range tests and seed swarms.

Every case is a real small training run set (CPU, well under a second per run)
logged with ``diagnose.probe.Probe`` into ``root/<case name>/<run name>``; the
case's folder is one study. Pathologies come from the training itself (an lr
above the edge of stability, the catapult of a wide net at a large lr, a seed
that lands in a poor basin), never painted onto a curve.

``CASES`` lists each case (``corpus.Case``) with the study-level checks it
must raise (``expect``) and must not raise (``forbid``).
"""

from __future__ import annotations

import atexit
import math
import shutil
import tempfile
from pathlib import Path

import torch

from diagnose.probe import Probe

from . import Case


def _setup(seed: int) -> None:
    torch.manual_seed(seed)
    torch.set_num_threads(1)


# -- models and data ---------------------------------------------------------------------------


def _classification_data(n_train: int = 384, n_valid: int = 128):
    """Four classes from a noisy linear teacher in 20 dimensions (fixed across seeds)."""
    generator = torch.Generator().manual_seed(1234)
    x = torch.randn(n_train + n_valid, 20, generator=generator)
    teacher = torch.randn(20, 4, generator=generator)
    y = (x @ teacher + 0.5 * torch.randn(n_train + n_valid, 4, generator=generator)).argmax(1)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def classifier(probe, *, lr: float, seed: int, steps: int = 300, momentum: float = 0.9, batch_size: int = 32,
               eval_every: int = 0) -> None:
    """A one-hidden-layer ReLU MLP classifier trained with SGD + momentum (small data: it overfits)."""
    _setup(seed)
    x, y, x_valid, y_valid = _classification_data()
    model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        index = torch.randint(0, len(x), (batch_size,), generator=generator)
        loss = torch.nn.functional.cross_entropy(model(x[index]), y[index])
        optimizer.zero_grad()
        loss.backward()
        probe.step(loss.item(), optimizer)
        optimizer.step()
        if eval_every and (step + 1) % eval_every == 0:
            with torch.no_grad():
                probe.eval("valid", loss=torch.nn.functional.cross_entropy(model(x_valid), y_valid).item())


class _WideNet(torch.nn.Module):
    """A two-layer ReLU net in the NTK parametrization: at a large lr its loss first catapults up, then recovers."""

    def __init__(self, dim: int, width: int):
        super().__init__()
        self.inner = torch.nn.Parameter(torch.randn(width, dim))
        self.outer = torch.nn.Parameter(torch.randn(width))

    def forward(self, x):
        return torch.relu(x @ self.inner.T / math.sqrt(self.inner.shape[1])) @ self.outer / math.sqrt(len(self.outer))


def wide_net(probe, *, lr: float, seed: int, steps: int = 500, batch_size: int = 32, eval_every: int = 0) -> None:
    """Plain SGD on a width-1024 net fitting sin(2 x0) from 10 inputs; eval_every=1 evaluates every step."""
    _setup(seed)
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(320, 10, generator=generator)
    y = torch.sin(2 * x[:, 0]) + 0.1 * torch.randn(320, generator=generator)
    x, y, x_valid, y_valid = x[:256], y[:256], x[256:], y[256:]
    model = _WideNet(10, 1024)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for step in range(steps):
        index = torch.randint(0, len(x), (batch_size,))
        loss = ((model(x[index]) - y[index]) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        probe.step(loss.item(), optimizer)
        optimizer.step()
        if eval_every and (step + 1) % eval_every == 0:
            with torch.no_grad():
                probe.eval("valid", loss=((model(x_valid) - y_valid) ** 2).mean().item())


def _images(n: int = 2048):
    """8x8 images whose class is the quadrant holding a bright 4x4 blob."""
    generator = torch.Generator().manual_seed(1234)
    y = torch.randint(0, 4, (n,), generator=generator)
    x = 0.5 * torch.randn(n, 1, 8, 8, generator=generator)
    for label, (row, col) in enumerate([(0, 0), (0, 4), (4, 0), (4, 4)]):
        x[y == label, :, row : row + 4, col : col + 4] += 1.0
    return x, y


def lr_range_test(probe, *, model: str = "mlp", batch_size: int = 64, lr_start: float = 1e-5, lr_end: float = 10.0,
                  steps: int = 300, seed: int = 0, momentum: float = 0.9) -> None:
    """Smith's LR range test: the lr grows exponentially every step; stops once the loss is over 1e3 or NaN."""
    _setup(seed)
    generator = torch.Generator().manual_seed(1234)
    if model == "mlp":
        x = torch.randn(2048, 20, generator=generator)
        y = (x @ torch.randn(20, 4, generator=generator) + 0.5 * torch.randn(2048, 4, generator=generator)).argmax(1)
        net = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    else:
        x, y = _images()
        net = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(), torch.nn.Linear(16, 4),
        )
    optimizer = torch.optim.SGD(net.parameters(), lr=lr_start, momentum=momentum)
    growth = (lr_end / lr_start) ** (1 / (steps - 1))
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_start * growth**step
        index = torch.randint(0, len(x), (batch_size,))
        loss = torch.nn.functional.cross_entropy(net(x[index]), y[index])
        optimizer.zero_grad()
        loss.backward()
        probe.step(loss.item(), optimizer)
        optimizer.step()
        if not math.isfinite(loss.item()) or loss.item() > 1e3:
            break


def sin_bee(probe, *, lr: float, momentum: float, seed: int, epochs: int = 250) -> None:
    """One bee of Morrison's swarm: width-10 one-hidden-layer ReLU net on sin, 61 points in [-5, 5], full batch."""
    _setup(seed)
    x = torch.linspace(-5, 5, 61).unsqueeze(1)
    y = torch.sin(x)
    model = torch.nn.Sequential(torch.nn.Linear(1, 10), torch.nn.ReLU(), torch.nn.Linear(10, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    for _ in range(epochs):
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        probe.step(loss.item(), optimizer)
        optimizer.step()


# -- studies -----------------------------------------------------------------------------------


def _log(root: Path, study: str, name: str, train, config: dict, role: str = "train", **kwargs) -> None:
    with Probe(root, study=study, name=name, config=config, role=role) as probe:
        train(probe, **kwargs)


def classifier_sweep(root: Path, study: str, lrs, seeds=(0, 1), eval_every: int = 0, steps: int = 300) -> None:
    for lr in lrs:
        for seed in seeds:
            config = {"lr": lr, "momentum": 0.9, "optimizer": "sgd", "batch_size": 32, "max_steps": steps, "seed": seed}
            _log(root, study, f"lr{lr:g}-s{seed}", classifier, config, lr=lr, seed=seed, steps=steps,
                 eval_every=eval_every)


def wide_sweep(root: Path, study: str, lrs, seeds=(0,), short_lr: float | None = None, steps: int = 500) -> None:
    for lr in lrs:
        for seed in seeds:
            config = {"lr": lr, "momentum": 0.0, "optimizer": "sgd", "batch_size": 32, "max_steps": steps, "seed": seed}
            _log(root, study, f"lr{lr:g}-s{seed}", wide_net, config, lr=lr, seed=seed, steps=steps)
    if short_lr is not None:
        config = {"lr": short_lr, "momentum": 0.0, "optimizer": "sgd", "batch_size": 32, "max_steps": 500, "seed": 0}
        _log(root, study, f"short-lr{short_lr:g}", wide_net, config, role="short", lr=short_lr, seed=0, steps=500,
             eval_every=1)


def classifier_short(root: Path, study: str, lrs, short_lr: float) -> None:
    classifier_sweep(root, study, lrs, seeds=(0,))
    config = {"lr": short_lr, "momentum": 0.9, "optimizer": "sgd", "batch_size": 32, "max_steps": 500, "seed": 0}
    _log(root, study, f"short-lr{short_lr:g}", classifier, config, role="short", lr=short_lr, seed=0, steps=500,
         eval_every=1)


def range_test(root: Path, study: str, **kwargs) -> None:
    name = f"range-{kwargs.get('model', 'mlp')}-bs{kwargs.get('batch_size', 64)}-s{kwargs.get('seed', 0)}"
    config = {"optimizer": "sgd", "momentum": 0.9, "batch_size": kwargs.get("batch_size", 64),
              "lr_start": kwargs.get("lr_start", 1e-5), "lr_end": kwargs.get("lr_end", 10.0)}
    _log(root, study, name, lr_range_test, config, role="lr_range", **kwargs)


def swarm(root: Path, study: str, momentums, lrs, seeds=(0, 1, 2, 3)) -> None:
    for momentum in momentums:
        for lr in lrs:
            for seed in seeds:
                config = {"lr": lr, "momentum": momentum, "optimizer": "sgd", "epochs": 250, "seed": seed}
                _log(root, study, f"m{momentum:g}-lr{lr:g}-s{seed}", sin_bee, config, lr=lr, momentum=momentum,
                     seed=seed)


def _case(name, build, expect=(), forbid=(), why=""):
    return Case(name=name, build=build, expect=frozenset(expect), forbid=frozenset(forbid), why=why)


SWEEP_CHECKS = ("unstable_above_best_lr", "best_lr_at_edge")

CASES: tuple[Case, ...] = (
    # lr sweeps
    _case(
        "sweep_edge_classifier",
        lambda root, s: classifier_sweep(root, s, (0.01, 0.03, 0.1, 0.25)),
        expect=SWEEP_CHECKS,
        forbid=("short_run_instability", "lr_range", "seed_spread"),
        why="lr* 0.1 is stable; at 0.25 the loss climbs back up in periods (training-loss metric)",
    ),
    _case(
        "sweep_edge_regression_valid",
        lambda root, s: _regression_sweep(root, s, (0.03, 0.1, 0.14)),
        expect=SWEEP_CHECKS,
        forbid=("short_run_instability", "lr_range", "seed_spread"),
        why="validation metric: lr* 0.1; at 0.14 one seed turns NaN mid-training",
    ),
    _case(
        "sweep_edge_slow_climb",
        lambda root, s: classifier_sweep(root, s, (0.03, 0.1, 0.3)),
        expect=SWEEP_CHECKS,
        forbid=("short_run_instability", "lr_range", "seed_spread"),
        why="lr* 0.1; at 0.3 the loss climbs back from 0.55 to 12 over the run while its minibatch noise grows",
    ),
    _case(
        "sweep_two_lrs_edge",
        lambda root, s: classifier_sweep(root, s, (0.1, 0.25)),
        expect=SWEEP_CHECKS,
        forbid=("short_run_instability", "lr_range", "seed_spread"),
        why="two lrs only: lr* 0.1 stable, 0.25 unstable",
    ),
    _case(
        "sweep_stable_interior",
        lambda root, s: classifier_sweep(root, s, (0.01, 0.03, 0.1), eval_every=25),
        forbid=SWEEP_CHECKS + ("short_run_instability", "lr_range", "seed_spread"),
        why="every lr is stable and the best (by validation loss) is in the middle: quiet",
    ),
    _case(
        "sweep_far_divergence",
        lambda root, s: classifier_sweep(root, s, (0.01, 0.03, 0.1, 3.0), eval_every=25),
        forbid=SWEEP_CHECKS + ("short_run_instability", "lr_range", "seed_spread"),
        why="only an lr 100x above lr* diverges, as any workload does: quiet",
    ),
    _case(
        "sweep_best_at_top",
        lambda root, s: classifier_sweep(root, s, (0.003, 0.01, 0.03)),
        expect=("best_lr_at_edge",),
        forbid=("unstable_above_best_lr", "short_run_instability", "lr_range", "seed_spread"),
        why="every lr stable and the largest is best: the sweep does not bracket lr*",
    ),
    # short runs at 2x lr*
    _case(
        "short_catapult_lr8",
        lambda root, s: wide_sweep(root, s, (2.0, 4.0), short_lr=8.0),
        expect=("short_run_instability",),
        forbid=SWEEP_CHECKS + ("lr_range", "seed_spread"),
        why="lr* 4; the 500-step run at 8 catapults to 100x its loss in the first 12 steps, then ends as well as lr*",
    ),
    _case(
        "short_catapult_lr6",
        lambda root, s: wide_sweep(root, s, (1.5, 3.0), short_lr=6.0),
        expect=("short_run_instability",),
        forbid=SWEEP_CHECKS + ("lr_range", "seed_spread"),
        why="lr* 3; the run at 6 rises about 14x at steps 10-19, then recovers",
    ),
    _case(
        "short_stable_wide",
        lambda root, s: wide_sweep(root, s, (1.0, 2.0), short_lr=4.0),
        forbid=("short_run_instability", "lr_range", "seed_spread"),
        why="lr* 2; the run at 4 trains smoothly",
    ),
    _case(
        "short_stable_classifier",
        lambda root, s: classifier_short(root, s, (0.03, 0.1), short_lr=0.2),
        forbid=("short_run_instability", "lr_range", "seed_spread"),
        why="lr* 0.1; the run at 0.2 trains without a period of rising loss",
    ),
    # LR range tests
    _case(
        "range_mlp_clean",
        lambda root, s: range_test(root, s, model="mlp", batch_size=64),
        expect=("lr_range",),
        forbid=SWEEP_CHECKS + ("short_run_instability", "seed_spread"),
        why="batch 64: loss 1.4 flat, falls to 0.2 near lr 0.15, blows up from 0.4",
    ),
    _case(
        "range_mlp_noisy",
        lambda root, s: range_test(root, s, model="mlp", batch_size=8),
        expect=("lr_range",),
        forbid=SWEEP_CHECKS + ("short_run_instability", "seed_spread"),
        why="batch 8: the same test with minibatch noise of +-30%",
    ),
    _case(
        "range_cnn",
        lambda root, s: range_test(root, s, model="cnn", batch_size=64),
        expect=("lr_range",),
        forbid=SWEEP_CHECKS + ("short_run_instability", "seed_spread"),
        why="a small CNN: loss falls to ~0 near lr 0.2 and blows up right after",
    ),
    # seed swarms (Morrison's sin bees)
    _case(
        "swarm_slow_cells_disagree",
        lambda root, s: swarm(root, s, (0.9, 0.95), (0.002, 0.01)),
        expect=("seed_spread",),
        forbid=SWEEP_CHECKS[:1] + ("short_run_instability", "lr_range"),
        why="at lr 0.002 the seeds end 3-6x apart (some bees fit, some barely reach the peaks); at 0.01 all fit",
    ),
    _case(
        "swarm_stuck_seed",
        lambda root, s: swarm(root, s, (0.0, 0.3), (0.05,)),
        expect=("seed_spread",),
        forbid=SWEEP_CHECKS + ("short_run_instability", "lr_range"),
        why="momentum 0 at lr 0.05: one bee of four is knocked into a poor fit (5x the others)",
    ),
    _case(
        "swarm_all_fit",
        lambda root, s: swarm(root, s, (0.9, 0.95), (0.01,)),
        forbid=SWEEP_CHECKS + ("short_run_instability", "lr_range", "seed_spread"),
        why="momentum 0.9-0.95 at lr 0.01: every bee fits (final losses within 1.4x)",
    ),
    _case(
        "swarm_consistent_slow",
        lambda root, s: swarm(root, s, (0.7,), (0.002,)),
        forbid=SWEEP_CHECKS + ("short_run_instability", "lr_range", "seed_spread"),
        why="momentum 0.7 at lr 0.002: every bee is slow, consistently (within 2x): not a seed problem",
    ),
)

BY_NAME = {case.name: case for case in CASES}


def _regression_sweep(root: Path, study: str, lrs, seeds=(0, 1)) -> None:
    from .training import mlp_regression

    for lr in lrs:
        for seed in seeds:
            config = {"lr": lr, "momentum": 0.9, "optimizer": "sgd", "batch_size": 32, "max_steps": 400, "seed": seed}
            _log(root, study, f"lr{lr:g}-s{seed}", mlp_regression, config, lr=lr, seed=seed, steps=400, eval_every=25)


def build(name: str, root: Path) -> Path:
    """Write case ``name`` under ``root``; returns its study folder."""
    BY_NAME[name].build(Path(root), name)
    return Path(root) / name


_built_root: Path | None = None


def built(name: str) -> Path:
    """Case ``name``'s study folder, trained once per test session (in a temporary folder)."""
    global _built_root
    if _built_root is None:
        _built_root = Path(tempfile.mkdtemp(prefix="diagnose-study-cases-"))
        atexit.register(shutil.rmtree, _built_root, True)
    folder = _built_root / name
    if not folder.is_dir():
        build(name, _built_root)
    return folder


def study(name: str):
    """Case ``name`` read back through the run-directory reader, as the one study it is."""
    from diagnose.analyze import group_studies
    from diagnose.readers import read_root

    root = read_root(built(name))
    assert not root.unreadable, root.unreadable
    [only] = group_studies(root.runs)
    return only
