"""Edge-case runs every check must survive: empty, a single point, constant, NaN at step 0, sparse logs, rescaled losses."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from diagnose.model import Run


def _run(name: str, steps, loss, **columns) -> Run:
    frame = pd.DataFrame({"step": np.asarray(steps, dtype=np.int64), "loss": np.asarray(loss, dtype=float), **columns})
    nan_steps = {"loss": frame.loc[frame["loss"].isna(), "step"].to_numpy()}
    return Run(name=name, study="edges", source=None, steps=frame, nan_steps=nan_steps, config={"lr": 0.1})


def degenerate() -> dict[str, Run]:
    """Runs with nothing to find (NaN at step 0 is divergence's business only)."""
    return {
        "empty": _run("empty", [], []),
        "single_point": _run("single_point", [0], [2.3], grad_norm=[1.0]),
        "constant": _run("constant", np.arange(500), np.full(500, 0.693), grad_norm=np.full(500, 0.5)),
        "nan_at_step_0": _run("nan_at_step_0", np.arange(300), np.r_[np.nan, np.linspace(2.3, 0.5, 299)],
                              grad_norm=np.r_[np.nan, np.linspace(1.0, 0.5, 299)]),
    }


def rescaled(run: Run, factor: float) -> Run:
    """The same run with every loss multiplied by ``factor`` (losses of 1e-4 or 1e4)."""
    steps = run.steps.copy()
    steps["loss"] = steps["loss"] * factor
    evals = run.evals.copy()
    if len(evals):
        evals["loss"] = evals["loss"] * factor
    return dataclasses.replace(run, steps=steps, evals=evals)


def every(run: Run, n: int) -> Run:
    """The run as if it had been logged every ``n`` steps."""
    steps = run.steps[run.steps["step"] % n == 0].reset_index(drop=True)
    return dataclasses.replace(run, steps=steps)


def findings(check, run: Run) -> list:
    """What a registered check reports on ``run``, as ``analyze`` runs it: nothing when it is skipped."""
    return [] if check.why_skipped(run) is not None else check.detect(run, check.config)
