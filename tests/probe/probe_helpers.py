"""Tiny real training problems on CPU for the probe's tests."""

from __future__ import annotations

import torch


def tiny_problem(seed: int = 0, width: int = 16):
    """A small MLP regression: (model, x, y)."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, width), torch.nn.Tanh(), torch.nn.Linear(width, 1))
    x, y = torch.randn(64, 8), torch.randn(64, 1)
    return model, x, y
