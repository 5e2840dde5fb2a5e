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
                probe.step(sum(block) / len(block), opt, grad_norm=norm.item(), clip_norm=clip_norm, step=step)
                block.clear()
        if eval_every and (step + 1) % eval_every == 0:
            with torch.no_grad():
                probe.eval("valid", loss=torch.nn.functional.mse_loss(model(x_valid), y_valid).item())


def _classification_data(n: int, seed: int, label_noise: float):
    """Points in 20 dimensions whose class (of 5) depends on two of them nonlinearly."""
    generator = torch.Generator().manual_seed(2000 + seed)
    x = torch.randn(n, 20, generator=generator)
    angle = torch.atan2(x[:, 1], x[:, 0]) + 0.8 * x[:, 0] * x[:, 1].tanh()
    y = ((angle + math.pi) / (2 * math.pi) * 5).long().clamp(0, 4)
    flip = torch.rand(n, generator=generator) < label_noise
    y[flip] = torch.randint(0, 5, (int(flip.sum()),), generator=generator)
    return x, y


def mlp_classification(
    probe,
    *,
    lr: float,
    steps: int = 600,
    batch_size: int = 32,
    momentum: float = 0.9,
    optimizer: str = "sgd",
    seed: int = 0,
    width: int = 64,
    depth: int = 2,
    n_train: int = 4096,
    label_noise: float = 0.0,
    init_scale: float = 1.0,
    warmup_steps: int = 0,
    clip_norm: float | None = None,
    eval_every: int = 0,
    eval_train: bool = False,
) -> None:
    """A ReLU MLP classifier trained with cross-entropy; ``eval_every`` > 0 evaluates on 1000 held-out points."""
    _setup(seed)
    x, y = _classification_data(n_train + 1000, seed, label_noise)
    x_valid, y_valid = x[n_train:], y[n_train:]
    x, y = x[:n_train], y[:n_train]
    layers: list[torch.nn.Module] = []
    size = 20
    for _ in range(depth):
        layers += [torch.nn.Linear(size, width), torch.nn.ReLU()]
        size = width
    model = torch.nn.Sequential(*layers, torch.nn.Linear(size, 5))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(init_scale)
    opt = _optimizer(optimizer, model.parameters(), lr, momentum)
    batch_size = min(batch_size, n_train)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup_steps) if warmup_steps else lr
        index = torch.randperm(n_train)[:batch_size]
        loss = torch.nn.functional.cross_entropy(model(x[index]), y[index])
        opt.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm if clip_norm else math.inf)
        opt.step()
        probe.step(loss.item(), opt, grad_norm=norm.item(), clip_norm=clip_norm)
        if eval_every and (step + 1) % eval_every == 0:
            with torch.no_grad():
                probe.eval("valid", loss=torch.nn.functional.cross_entropy(model(x_valid), y_valid).item())
                if eval_train:
                    probe.eval("train", loss=torch.nn.functional.cross_entropy(model(x), y).item())


def catapult(probe, *, lr: float, steps: int = 300, width: int = 1024, n_train: int = 128, seed: int = 0, warmup_steps: int = 0) -> None:
    """Full-batch gradient descent on a wide two-layer ReLU net in NTK parametrization (MSE).

    Above the initial stability limit (about 2 / the initial Hessian's largest
    eigenvalue) and below about twice it, the loss first grows for some steps,
    then the net moves to a flatter region and the loss falls again: the
    "catapult" (Lewkowycz et al. 2020), a textbook early instability that
    recovers. Warmup avoids it.
    """
    _setup(seed)
    generator = torch.Generator().manual_seed(3000 + seed)
    x = torch.randn(n_train, 10, generator=generator)
    y = torch.sin(x[:, :1] * 2) + x[:, 1:2] * x[:, 2:3]
    first = torch.nn.Linear(10, width, bias=False)
    second = torch.nn.Linear(width, 1, bias=False)
    torch.nn.init.normal_(first.weight)
    torch.nn.init.normal_(second.weight)
    params = [first.weight, second.weight]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.0)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup_steps) if warmup_steps else lr
        out = second(torch.relu(first(x) / math.sqrt(10))) / math.sqrt(width)
        loss = 0.5 * torch.nn.functional.mse_loss(out, y)
        opt.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, math.inf)
        opt.step()
        probe.step(loss.item(), opt, grad_norm=norm.item())


def sin_bee(probe, *, lr: float, momentum: float, epochs: int = 250, seed: int = 0, width: int = 10) -> None:
    """One bee of Morrison's swarm (seed 000): a width-10 ReLU net fitting sin on 61 points in [-5, 5], full batch."""
    _setup(seed)
    x = torch.linspace(-5, 5, 61).unsqueeze(1)
    y = torch.sin(x)
    model = torch.nn.Sequential(torch.nn.Linear(1, width), torch.nn.ReLU(), torch.nn.Linear(width, 1))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    for _ in range(epochs):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), math.inf)
        opt.step()
        probe.step(loss.item(), opt, grad_norm=norm.item())
