"""A log root of many small studies, written as diagnose.run/1 folders: what a team with thousands of runs has.

Each study holds three short runs with a noisy decaying loss (no torch: the
report's budget is about how many studies there are, not how they trained).
By study number modulo 4: 0 three healthy seeds; 1 an lr sweep whose top lr
diverges; 2 an lr sweep whose top lr spikes mid-run; 3 three seeds of which
one diverges.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

LRS = (0.01, 0.03, 0.1)


def make_root(root: Path, studies: int = 24, steps: int = 300) -> Path:
    rng = np.random.default_rng(7)
    step = np.arange(steps)
    for number in range(studies):
        study, kind = f"study{number:03d}", number % 4
        for seed, lr in enumerate(LRS if kind in (1, 2) else (0.03,) * 3):
            loss = 0.2 + 2.0 * np.exp(-step * lr / 3) + 0.02 * rng.standard_normal(steps) ** 2
            grad_norm = 1.0 + 0.1 * rng.standard_normal(steps) ** 2
            if seed == 2 and kind in (1, 3):  # blows up, then NaN
                loss[steps // 2:] *= np.exp(np.arange(steps - steps // 2) / 10)
                loss[steps // 2 + 40:] = np.nan
            if seed == 2 and kind == 2:
                loss[steps // 2:steps // 2 + 5] *= 20
            name = f"lr{lr:g}-s{seed}"
            folder = root / study / name
            folder.mkdir(parents=True)
            (folder / "run.json").write_text(json.dumps(
                {"format": "diagnose.run/1", "name": name, "study": study, "status": "finished",
                 "config": {"lr": lr, "max_steps": steps, "seed": seed}}))
            rows = "\n".join(f"{s},{v:.6g},{g:.4g},{lr}" for s, v, g in zip(step, loss, grad_norm))
            (folder / "steps.csv").write_text(f"step,loss,grad_norm,lr\n{rows}\n")
    return root
