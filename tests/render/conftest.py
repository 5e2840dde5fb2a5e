"""Fixtures: a log root of real tiny training runs, analysed, with hand-made findings.

The findings are written by hand (with the evidence keys of the checks'
vocabulary) from what the runs really did, so the report is tested on its
own, whatever the checks currently find.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from diagnose.analyze import Analysis, analyze
from diagnose.findings import Finding, Recommendation, Severity
from diagnose.readers import read_root
from diagnose.render import html

GENERATED = "2026-11-22T03:00:00+00:00"


def _training():
    """The module that trains the runs: imported where a test needs one, so that the rest run without torch."""
    pytest.importorskip("torch", reason="the report tests' runs are trained with torch")
    from . import tiny_runs

    return tiny_runs


@pytest.fixture(scope="session")
def log_root(tmp_path_factory):
    return _training().make_root(tmp_path_factory.mktemp("logs") / "logs")


@pytest.fixture
def train():
    """``tiny_runs.train``: one real run written into a folder."""
    return _training().train


def _final_valid(run) -> float:
    valid = run.valid_evals()["loss"].to_numpy(dtype=float)
    return float(valid[-1]) if valid.size and np.isfinite(valid[-1]) else float("inf")


def _unstable_periods(run) -> list[list[int]]:
    """Steps where the loss is over 3x its best so far (after the first 10%), as [start, end] spans."""
    steps = run.steps["step"].to_numpy()
    loss = run.steps["loss"].to_numpy(dtype=float)
    best = np.minimum.accumulate(np.where(np.isfinite(loss), loss, np.inf))
    bad = ~np.isfinite(loss) | (loss > 3 * best)
    bad[: len(loss) // 10] = False
    spans, start = [], None
    for i, flag in enumerate(bad):
        if flag and start is None:
            start = i
        if not flag and start is not None:
            spans.append([int(steps[start]), int(steps[i - 1])])
            start = None
    if start is not None:
        spans.append([int(steps[start]), int(steps[-1])])
    return spans


def handmade(analysis: Analysis) -> Analysis:
    """The analysis with findings and study summaries written by hand from the runs' series."""
    studies = {study.name: study for study in analysis.studies}
    sweep = studies["sweep"]
    train = sweep.by_role("train")
    scores = {run.lr: _final_valid(run) for run in train}
    best_lr = min(scores, key=scores.get)
    periods = {run.name: _unstable_periods(run) for run in train if run.lr > best_lr}
    periods = {name: spans for name, spans in periods.items() if spans}
    unstable_lrs = sorted(run.lr for run in train if run.name in periods)
    summaries = []
    for summary in analysis.document.studies:
        summary = dict(summary)
        if summary["study"] == "sweep":
            summary.update(
                best_lr=best_lr,
                metric="valid_loss",
                lrs=[{"lr": lr, "score": score if np.isfinite(score) else None, "score_min": None,
                      "score_max": None, "seeds": 1, "stable": lr not in unstable_lrs}
                     for lr, score in sorted(scores.items())],
                unstable_lrs=unstable_lrs,
            )
        if summary["study"] == "swarm":
            cells = []
            swarm = _training().SWARM
            for momentum in swarm["momentum"]:
                for lr in swarm["lr"]:
                    runs = [r for r in studies["swarm"].runs if r.momentum == momentum and r.lr == lr]
                    finals = [float(r.steps["loss"].iloc[-20:].mean()) for r in runs]
                    cells.append({"momentum": momentum, "lr": lr, "runs": [r.name for r in runs],
                                  "final_losses": finals, "fit": sum(f < 0.05 for f in finals)})
            summary["swarm"] = {"axes": ["momentum", "lr"], "cells": cells}
        summaries.append(summary)

    unstable_runs = tuple(sorted(periods))
    all_spans = [s for spans in periods.values() for s in spans]
    grad_run = next(r for r in train if r.lr == best_lr)
    norms = grad_run.steps["grad_norm"].to_numpy()
    threshold = float(np.percentile(norms, 90))
    overfit = studies["overfit"].runs[0]
    valid = overfit.valid_evals()
    onset = int(valid["step"].to_numpy()[int(np.argmin(valid["loss"].to_numpy()))])
    lr_range = sweep.by_role("lr_range")[0]
    findings = [
        Finding(
            check="unstable_above_best_lr", severity=Severity.WARNING, study="sweep", runs=unstable_runs,
            steps=(min(s[0] for s in all_spans), max(s[1] for s in all_spans)),
            title=f"Runs above lr* = {best_lr:g} are unstable ({len(unstable_runs)} of {len(train)} lrs)",
            detail=f"The loss of {', '.join(unstable_runs)} goes up, not down, over {len(all_spans)} periods.",
            evidence={"periods": periods, "best_lr": best_lr},
            recommendation=Recommendation("warmup", "fix the instability to reach higher lrs",
                                          {"warmup_steps": 100, "base_lr": max(unstable_lrs)}),
        ),
        Finding(
            check="grad_norm_outliers", severity=Severity.WARNING, study="sweep", runs=(grad_run.name,),
            steps=(0, int(grad_run.last_step)), title=f"{grad_run.name}: outlier gradient norms",
            detail=f"10% of updates have a grad norm above {threshold:.3g}.",
            evidence={"threshold": threshold, "percentile": 90, "window": [0, int(grad_run.last_step)],
                      "clipped_fraction": 0.1, "median": float(np.median(norms)),
                      "outlier_steps": [int(s) for s in grad_run.steps["step"][norms > threshold][:50]]},
            recommendation=Recommendation("clip", "clip at the 90th percentile", {"threshold": round(threshold, 2)}),
        ),
        Finding(
            check="overfitting", severity=Severity.WARNING, study="overfit", runs=(overfit.name,),
            steps=(onset, int(overfit.last_step)), title=f"{overfit.name}: overfitting from step {onset}",
            detail="Validation loss rises while training loss falls.",
            evidence={"onset_step": onset, "split": "valid",
                      "gap": [[int(s), float(v - t)] for s, v, t in zip(valid["step"], valid["loss"],
                                                                        overfit.train_evals()["loss"])]},
            recommendation=Recommendation("regularization", "add weight decay", {"weight_decay": 0.0005}),
        ),
        Finding(
            check="lr_range", severity=Severity.INFO, study="sweep", runs=(lr_range.name,), steps=None,
            title="LR range test: train between lr 0.001 and 0.1", detail="The loss falls fastest in [0.001, 0.1].",
            evidence={"lr_min": 0.001, "lr_max": 0.1, "blowup_lr": 0.5, "run": lr_range.name},
            recommendation=Recommendation("lr", "the largest lr where the loss still falls", {"value": 0.1}),
        ),
    ]
    document = dataclasses.replace(analysis.document, studies=summaries, findings=findings, generated=GENERATED)
    return Analysis(document=document, studies=analysis.studies)


@pytest.fixture(scope="session")
def analysis(log_root) -> Analysis:
    return handmade(analyze(read_root(log_root)))


@pytest.fixture(scope="session")
def page(analysis) -> str:
    """The report of ``analysis``, rendered once for the session."""
    return html.render(analysis)
