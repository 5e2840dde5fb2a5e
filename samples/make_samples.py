"""Regenerate the sample training logs in samples/ (CPU, a few minutes).

    python samples/make_samples.py                 # rewrite the studies next to this script
    python samples/make_samples.py --out /tmp/s    # somewhere else
    python samples/make_samples.py --quick --out /tmp/s   # reduced grid, few steps (tests)

Every run is a small real training run, logged with ``diagnose.probe.Probe``:

- ``lr_sweep``: SGD + momentum 0.9 on a teacher-student regression task, seven
  lrs a factor ~3 apart, two seeds each, validation every 100 steps; plus the
  Tuning Playbook's short run (role ``short``): 500 steps at 2x the best lr,
  evaluated every step.
- ``lr_range``: Smith's LR range test on the same task (role ``lr_range``).
- ``healthy``: the same task at the best lr with warmup, cosine decay and larger batches.
- ``clipping``: the same task with a clipping threshold below most gradient norms.
- ``overfitting``: a wide net on 100 noisy samples, validated on fresh data.
- ``spikes``: Adam fitting 512 samples full batch: mid-training loss spikes once the loss is tiny.
- ``swarm``: Morrison's swarm (width-10 ReLU net fitting sin on 61 points,
  full batch, SGD, momentum x lr grid, four seeds per cell).

Needs torch; reading the logs afterwards does not.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from diagnose.probe import Probe


# The teacher-student regression task: inputs from N(0, I), targets from a fixed
# random tanh network scaled to unit variance, fresh batches every step.
INPUT_DIM = 16
TEACHER_WIDTH = 32
TASK_SEED = 0


@dataclass
class Task:
    """A fixed random teacher; ``batch`` draws fresh (x, y) pairs from it."""

    w1: torch.Tensor
    w2: torch.Tensor
    scale: float

    @classmethod
    def make(cls) -> Task:
        gen = torch.Generator().manual_seed(TASK_SEED)
        w1 = 2 * torch.randn(INPUT_DIM, TEACHER_WIDTH, generator=gen) / math.sqrt(INPUT_DIM)
        w2 = torch.randn(TEACHER_WIDTH, 1, generator=gen) / math.sqrt(TEACHER_WIDTH)
        task = cls(w1, w2, 1.0)
        task.scale = float(task.target(torch.randn(10_000, INPUT_DIM, generator=gen)).std())
        return task

    def target(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ self.w1) @ self.w2 / self.scale

    def batch(self, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(size, INPUT_DIM, generator=gen)
        return x, self.target(x)


def mlp(sizes: list[int], seed: int) -> nn.Sequential:
    """A ReLU MLP whose initial weights depend only on ``seed``."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def mse(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(F.mse_loss(model(x), y))


def train(
    probe: Probe,
    model: nn.Module,
    next_batch,
    valid: tuple[torch.Tensor, torch.Tensor] | None,
    *,
    lr: float,
    momentum: float,
    max_steps: int,
    eval_every: int | None,
    lr_at=None,
    clip_norm: float | None = None,
    stop=None,
    adam: bool = False,
) -> None:
    """SGD with momentum (or Adam, beta1 = ``momentum``) on MSE, logged step by step.

    Stops early when the loss is not finite. ``lr_at(step)`` sets the lr of each
    step (schedules, the LR range test); ``stop(losses)`` ends the run early (the
    range test's blow-up rule).
    """
    if adam:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(momentum, 0.999))
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    losses: list[float] = []
    with probe:
        for step in range(max_steps):
            if lr_at is not None:
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step)
            x, y = next_batch()
            loss = F.mse_loss(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip_norm is None:
                probe.step(loss, optimizer)
            else:
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
                probe.step(loss, optimizer, grad_norm=norm, clip_norm=clip_norm)
            losses.append(loss.item())
            if not math.isfinite(losses[-1]) or (stop is not None and stop(losses)):
                break
            optimizer.step()
            last = step == max_steps - 1
            if valid is not None and eval_every and ((step + 1) % eval_every == 0 or last):
                probe.eval("valid", loss=mse(model, *valid))


def fresh_batches(task: Task, batch_size: int, seed: int):
    gen = torch.Generator().manual_seed(1000 + seed)
    return lambda: task.batch(batch_size, gen)


def valid_set(task: Task) -> tuple[torch.Tensor, torch.Tensor]:
    return task.batch(1024, torch.Generator().manual_seed(99))


def sgd_config(lr, momentum, batch_size, max_steps, seed, **extra) -> dict:
    return {"lr": lr, "momentum": momentum, "optimizer": "sgd", "batch_size": batch_size,
            "max_steps": max_steps, "seed": seed, **extra}


STUDENT = [INPUT_DIM, 64, 64, 1]
BATCH_SIZE = 128
SWEEP_LRS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
BEST_LR = 0.1  # the sweep's lr* (lowest final validation loss), read off the generated logs
CLIP_NORM = 0.25  # below the median gradient norm at BEST_LR (about 0.36), so most updates are clipped
OVERFIT_LR = 5e-4
LABEL_NOISE = 0.5  # std of the noise added to the overfitting study's targets


def lr_sweep(out: Path, quick: bool) -> None:
    """Seven lrs a factor ~3 apart, two seeds, validation every 100 steps; and the 2x short run."""
    task = Task.make()
    valid = valid_set(task)
    lrs, seeds, steps, every = ((0.1, 3.0), (0,), 100, 20) if quick else (SWEEP_LRS, (0, 1), 1500, 100)
    batch_size = BATCH_SIZE
    for lr in lrs:
        for seed in seeds:
            name = f"lr{lr:g}-s{seed}"
            config = sgd_config(lr, 0.9, batch_size, steps, seed, task="teacher-student regression")
            probe = Probe(out, study="lr_sweep", name=name, config=config)
            train(probe, mlp(STUDENT, seed), fresh_batches(task, batch_size, seed), valid,
                  lr=lr, momentum=0.9, max_steps=steps, eval_every=every)

    # The playbook's check for early instability: ~500 steps at 2x lr*, evaluated every step.
    short_lr, steps = 2 * BEST_LR, 50 if quick else 500
    config = sgd_config(short_lr, 0.9, batch_size, steps, 0, task="teacher-student regression", best_lr=BEST_LR)
    probe = Probe(out, study="lr_sweep", name=f"short-2x-lr{short_lr:g}", config=config, role="short")
    train(probe, mlp(STUDENT, 0), fresh_batches(task, batch_size, 0), valid,
          lr=short_lr, momentum=0.9, max_steps=steps, eval_every=1)


def lr_range(out: Path, quick: bool) -> None:
    """Smith's range test: lr grows exponentially from 1e-5 toward 10; stop when the loss blows up."""
    task = Task.make()
    lr_min, lr_max, steps, batch_size = 1e-5, 10.0, 100 if quick else 400, BATCH_SIZE

    def lr_at(step: int) -> float:
        return lr_min * (lr_max / lr_min) ** (step / (steps - 1))

    average, lowest = 0.0, math.inf

    def blown_up(losses: list[float]) -> bool:
        # fastai's lr_find rule: stop once the debiased EMA (0.98) of the loss exceeds 4x its lowest value
        nonlocal average, lowest
        average = 0.98 * average + 0.02 * losses[-1]
        smoothed = average / (1 - 0.98 ** len(losses))
        lowest = min(lowest, smoothed)
        return smoothed > 4 * lowest

    config = {"optimizer": "sgd", "momentum": 0.9, "batch_size": batch_size, "max_steps": steps,
              "seed": 0, "lr_start": lr_min, "lr_end": lr_max, "schedule": "exponential",
              "task": "teacher-student regression"}
    probe = Probe(out, study="lr_range", name="range-test", config=config, role="lr_range")
    train(probe, mlp(STUDENT, 0), fresh_batches(task, batch_size, 0), None,
          lr=lr_min, momentum=0.9, max_steps=steps, eval_every=None, lr_at=lr_at, stop=blown_up)


def healthy(out: Path, quick: bool) -> None:
    """The best lr reached by a short warmup, cosine decay, larger batches: a clean curve that flattens out."""
    task = Task.make()
    lr, steps, warmup, batch_size = BEST_LR, 100 if quick else 2000, 100, 2 * BATCH_SIZE

    def warmup_cosine(step: int) -> float:
        return min(1.0, (step + 1) / warmup) * lr * 0.5 * (1 + math.cos(math.pi * step / steps))

    config = sgd_config(lr, 0.9, batch_size, steps, 0, warmup_steps=warmup, schedule="cosine",
                        task="teacher-student regression")
    probe = Probe(out, study="healthy", name=f"warmup-cosine-lr{lr:g}", config=config)
    train(probe, mlp(STUDENT, 0), fresh_batches(task, batch_size, 0), valid_set(task),
          lr=lr, momentum=0.9, max_steps=steps, eval_every=100 if not quick else 20, lr_at=warmup_cosine)


def clipping(out: Path, quick: bool) -> None:
    """The best lr with a clipping threshold below most gradient norms."""
    task = Task.make()
    lr, steps, batch_size, clip = BEST_LR, 100 if quick else 1500, BATCH_SIZE, CLIP_NORM
    config = sgd_config(lr, 0.9, batch_size, steps, 0, clip_norm=clip, task="teacher-student regression")
    probe = Probe(out, study="clipping", name=f"clip{clip:g}-lr{lr:g}", config=config)
    train(probe, mlp(STUDENT, 0), fresh_batches(task, batch_size, 0), valid_set(task),
          lr=lr, momentum=0.9, max_steps=steps, eval_every=100 if not quick else 20, clip_norm=clip)


def overfitting(out: Path, quick: bool) -> None:
    """A wide net on 100 noisy samples, full batch, validated on 1024 fresh noisy samples."""
    task = Task.make()
    gen = torch.Generator().manual_seed(7)

    def noisy(size: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = task.batch(size, gen)
        return x, y + LABEL_NOISE * torch.randn(y.shape, generator=gen)

    train_set, valid = noisy(100), noisy(1024)
    lr, steps = OVERFIT_LR, 100 if quick else 3000
    config = sgd_config(lr, 0.9, len(train_set[0]), steps, 0, train_samples=len(train_set[0]),
                        label_noise=LABEL_NOISE, task="teacher-student regression")
    probe = Probe(out, study="overfitting", name="wide-n100", config=config)
    train(probe, mlp([INPUT_DIM, 512, 512, 1], 0), lambda: train_set, valid,
          lr=lr, momentum=0.9, max_steps=steps, eval_every=50 if not quick else 20)


def spikes(out: Path, quick: bool) -> None:
    """Adam fitting 512 samples full batch: once the loss is tiny, its second-moment estimate has
    decayed with the gradients, an ordinary gradient makes an outsized update and the loss spikes."""
    task = Task.make()
    train_set = task.batch(512, torch.Generator().manual_seed(3))
    steps = 100 if quick else 4000
    for lr in (0.003,) if quick else (0.001, 0.003):
        config = {"lr": lr, "momentum": 0.9, "optimizer": "adam", "betas": [0.9, 0.999], "eps": 1e-8,
                  "batch_size": len(train_set[0]), "max_steps": steps, "seed": 0, "train_samples": len(train_set[0]),
                  "task": "teacher-student regression"}
        probe = Probe(out, study="spikes", name=f"adam-lr{lr:g}", config=config)
        # No validation here: 512 samples are memorised, and the point is the training loss.
        train(probe, mlp(STUDENT, 0), lambda: train_set, None,
              lr=lr, momentum=0.9, max_steps=steps, eval_every=None, adam=True)


def swarm(out: Path, quick: bool) -> None:
    """Morrison's swarm: width-10 ReLU nets fitting sin on 61 points, momentum x lr grid."""
    x = torch.linspace(-5, 5, 61).unsqueeze(1)
    y = torch.sin(x)
    momenta, lrs, seeds, epochs = ((0.9, 0.99), (0.01,), (0,), 50) if quick else (
        (0.9, 0.95, 0.99), (0.002, 0.01), (0, 1, 2, 3), 500)
    for momentum in momenta:
        for lr in lrs:
            for seed in seeds:
                config = sgd_config(lr, momentum, 61, epochs, seed, width=10, hidden_layers=1, task="sin on [-5, 5]")
                probe = Probe(out, study="swarm", name=f"m{momentum:g}-lr{lr:g}-s{seed}", config=config)
                train(probe, mlp([1, 10, 1], seed), lambda: (x, y), None,
                      lr=lr, momentum=momentum, max_steps=epochs, eval_every=None)


STUDIES = {
    "lr_sweep": lr_sweep,
    "lr_range": lr_range,
    "healthy": healthy,
    "clipping": clipping,
    "overfitting": overfitting,
    "spikes": spikes,
    "swarm": swarm,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="folder to write the studies into (default: next to this script)")
    parser.add_argument("--quick", action="store_true", help="a reduced grid with few steps (for tests)")
    parser.add_argument("--only", nargs="+", choices=list(STUDIES), default=list(STUDIES), help="studies to write")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for study in args.only:
        folder = args.out / study
        if folder.exists():
            shutil.rmtree(folder)  # a rerun replaces a study; stale runs must not linger
        print(f"writing {folder}", file=sys.stderr)
        STUDIES[study](args.out, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
