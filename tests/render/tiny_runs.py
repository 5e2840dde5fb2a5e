"""Small real training runs on CPU, written as diagnose.run/1 folders for the report tests.

Each run trains a tiny MLP with torch (seconds in all) so the report is drawn
from curves that real optimizers produced: an lr sweep whose top lrs go
unstable, a short run at 2x lr* evaluated every step, an LR range test, a
momentum x lr swarm (seed 000) and a run that overfits a tiny training set.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import torch


def _data(seed: int, n: int, noise: float = 0.1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=generator) * 10 - 5
    y = torch.sin(x) + noise * torch.randn(n, 1, generator=generator)
    return x, y


def train(
    folder: Path,
    *,
    study: str,
    name: str,
    lr: float,
    momentum: float = 0.9,
    steps: int = 300,
    seed: int = 0,
    role: str = "train",
    batch_size: int = 16,
    train_size: int = 256,
    width: int = 16,
    eval_every: int = 20,
    lr_growth: float | None = None,
    extra_config: dict | None = None,
) -> Path:
    """Train one tiny sin-fitting MLP with SGD and write its run folder; returns the folder."""
    torch.manual_seed(seed)
    x_train, y_train = _data(1000 + seed if train_size < 64 else 1, train_size)
    x_valid, y_valid = _data(2, 256, noise=0.0)
    model = torch.nn.Sequential(torch.nn.Linear(1, width), torch.nn.Tanh(), torch.nn.Linear(width, width),
                                torch.nn.Tanh(), torch.nn.Linear(width, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    generator = torch.Generator().manual_seed(seed)
    rows, evals = [], []
    for step in range(steps):
        if lr_growth is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr * lr_growth**step
        index = torch.randint(0, train_size, (min(batch_size, train_size),), generator=generator)
        loss = torch.nn.functional.mse_loss(model(x_train[index]), y_train[index])
        optimizer.zero_grad()
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf")))
        optimizer.step()
        rows.append((step, loss.item(), grad_norm, optimizer.param_groups[0]["lr"], momentum))
        if eval_every and (step % eval_every == 0 or step == steps - 1):
            with torch.no_grad():
                evals.append((step, "valid", float(torch.nn.functional.mse_loss(model(x_valid), y_valid))))
                evals.append((step, "train", float(torch.nn.functional.mse_loss(model(x_train), y_train))))
        if not math.isfinite(loss.item()):
            break
    folder.mkdir(parents=True, exist_ok=True)
    config = {"lr": lr, "momentum": momentum, "optimizer": "sgd", "batch_size": batch_size,
              "max_steps": steps, "seed": seed, **(extra_config or {})}
    status = "finished" if math.isfinite(rows[-1][1]) else "diverged"
    (folder / "run.json").write_text(json.dumps(
        {"format": "diagnose.run/1", "name": name, "study": study, "role": role, "config": config,
         "status": status}))
    with open(folder / "steps.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "loss", "grad_norm", "lr", "momentum"])
        writer.writerows(rows)
    if evals:
        with open(folder / "evals.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["step", "split", "loss"])
            writer.writerows(evals)
    return folder


SWEEP_LRS = (0.003, 0.01, 0.03, 0.1, 0.3)
SWARM = {"momentum": (0.7, 0.9, 0.95), "lr": (0.002, 0.01)}


def make_root(root: Path) -> Path:
    """The test log root: studies ``sweep``, ``swarm`` and ``overfit``."""
    torch.set_num_threads(1)
    for lr in SWEEP_LRS:
        train(root / "sweep" / f"lr{lr:g}", study="sweep", name=f"lr{lr:g}", lr=lr)
    train(root / "sweep" / "short-lr0.06", study="sweep", name="short-lr0.06", lr=0.06, steps=120,
          role="short", eval_every=1)
    train(root / "sweep" / "range", study="sweep", name="range", lr=1e-4, steps=200, role="lr_range",
          momentum=0.9, eval_every=0, lr_growth=(10 / 1e-4) ** (1 / 200))
    for momentum in SWARM["momentum"]:
        for lr in SWARM["lr"]:
            for seed in (0, 1):
                name = f"m{momentum:g}-lr{lr:g}-s{seed}"
                train(root / "swarm" / name, study="swarm", name=name, lr=lr, momentum=momentum,
                      steps=150, seed=seed, batch_size=64, train_size=64, eval_every=0)
    train(root / "overfit" / "tiny-data", study="overfit", name="tiny-data", lr=0.05, steps=400,
          train_size=12, batch_size=12, width=64, eval_every=10)
    return root
