"""Small real training runs (CPU, about a second each) that the corpus cases are made of.

Every function trains a tiny PyTorch model and reports each optimizer step to
``probe`` (``diagnose.probe.Probe``'s interface: ``step(loss, optimizer,
grad_norm=, clip_norm=)`` and ``eval(split, loss=)``). The pathologies are
produced by the training itself (an lr, a momentum, a dataset size, a batch
of outliers at a known step), never painted onto the curve.
"""

from __future__ import annotations

import math

import torch


def _setup(seed: int) -> None:
    torch.manual_seed(seed)
    torch.set_num_threads(1)


def _regression_data(n: int, dim: int, seed: int):
    generator = torch.Generator().manual_seed(1000 + seed)
    x = torch.randn(n, dim, generator=generator)
    teacher = torch.randn(dim, 1, generator=generator)
    teacher /= teacher.norm()
    y = torch.sin(1.5 * x @ teacher) + 0.5 * torch.tanh(2 * x[:, :1]) + 0.05 * torch.randn(n, 1, generator=generator)
    return x, y


def _optimizer(name: str, params, lr: float, momentum: float):
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(momentum or 0.9, 0.999))
    return torch.optim.SGD(params, lr=lr, momentum=momentum)


def mlp_regression(
    probe,
    *,
    lr: float,
    steps: int = 600,
    batch_size: int = 32,
    momentum: float = 0.9,
    optimizer: str = "sgd",
    seed: int = 0,
    width: int = 64,
    outliers: dict[int, float] | tuple = (),
    clip_norm: float | None = None,
    warmup_steps: int = 0,
    log_every: int = 1,
    eval_every: int = 0,
    n_train: int = 2048,
) -> None:
    """An MLP regressor on a smooth teacher; ``outliers`` = {step: factor} scales that step's batch targets.

    ``log_every`` > 1 reports the mean loss of each block of steps, as the
    Hugging Face Trainer does.
    """
    _setup(seed)
    x, y = _regression_data(n_train + 512, 16, seed)
    x_valid, y_valid = x[n_train:], y[n_train:]
    x, y = x[:n_train], y[:n_train]
    model = torch.nn.Sequential(
        torch.nn.Linear(16, width), torch.nn.Tanh(), torch.nn.Linear(width, width), torch.nn.Tanh(), torch.nn.Linear(width, 1)
    )
    opt = _optimizer(optimizer, model.parameters(), lr, momentum)
    outliers = dict(outliers or {})
    block: list[float] = []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup_steps) if warmup_steps else lr
        index = torch.randint(0, n_train, (batch_size,))
        xb, yb = x[index], y[index]
        if step in outliers:
            yb = yb * outliers[step] + outliers[step]
        loss = torch.nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm if clip_norm else math.inf)
        opt.step()
        if log_every == 1:
            probe.step(loss.item(), opt, grad_norm=norm.item(), clip_norm=clip_norm)
        else:
            block.append(loss.item())
            if len(block) == log_every:
                probe.step(sum(block) / len(block), opt, grad_norm=norm.item(), clip_norm=clip_norm)
                block.clear()
        if eval_every and (step + 1) % eval_every == 0:
            with torch.no_grad():
                probe.eval("valid", loss=torch.nn.functional.mse_loss(model(x_valid), y_valid).item())
