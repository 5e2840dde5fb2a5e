"""diagnose.sweep: lr sweeps, lr*, seeds, the swarm view and the warmup plan, on real runs and edge cases."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diagnose import sweep
from diagnose.findings import to_jsonable
from diagnose.model import Run, Study

torch = pytest.importorskip("torch")
from corpus.study_cases import study  # noqa: E402  (needs torch)


def make_run(name: str, loss, lr: float | None, seed=0, role="train", evals=None, status=None, **config) -> Run:
    """An in-memory run from a loss series; NaN/inf values count as written by the log."""
    loss = np.asarray(loss, dtype=float)
    steps = np.arange(len(loss))
    run = Run(
        name=name,
        study="s",
        source=Path(name),
        steps=pd.DataFrame({"step": steps, "loss": loss}),
        role=role,
        config={**({"lr": lr} if lr is not None else {}), "seed": seed, **config},
        status=status,
        nan_steps={"loss": steps[np.isnan(loss)]},
    )
    if evals is not None:
        run.evals = pd.DataFrame({"step": [s for s, _ in evals], "split": "valid", "loss": [v for _, v in evals]})
    return run


def decaying(n=300, start=2.0, end=0.1, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    return start * (end / start) ** (np.arange(n) / n) * np.exp(noise * rng.standard_normal(n))


def rescaled(original: Study, factor: float) -> Study:
    runs = [dataclasses.replace(run, steps=run.steps.assign(loss=run.steps["loss"] * factor),
                                evals=run.evals.assign(loss=run.evals["loss"] * factor)) for run in original.runs]
    return Study(original.name, runs)


# -- real sweeps -----------------------------------------------------------------------------


def test_a_sweep_scored_by_validation_loss_at_the_best_checkpoint():
    case = study("sweep_stable_interior")
    found = sweep.main_sweep(case)
    assert found.metric == "valid_loss"
    assert found.lrs == [0.01, 0.03, 0.1]
    # lr* is the lr whose median best validation loss is lowest, computed here independently.
    best_valid = {}
    for run in case.runs:
        best_valid.setdefault(run.lr, []).append(run.valid_evals()["loss"].min())
    expected = min(best_valid, key=lambda lr: np.median(best_valid[lr]))
    assert found.best_lr == expected == 0.03
    summary = sweep.summary(case)
    assert summary["best_lr"] == 0.03 and summary["metric"] == "valid_loss"
    assert [p["seeds"] for p in summary["lrs"]] == [2, 2, 2]
    assert all(p["score_min"] <= p["score"] <= p["score_max"] for p in summary["lrs"])
    assert summary["unstable_lrs"] == []
    assert summary["best_lr_spread"] == pytest.approx(
        (max(best_valid[0.03]) - min(best_valid[0.03])) / np.median(best_valid[0.03])
    )
    json.dumps(to_jsonable(summary), allow_nan=False)


def test_training_loss_metric_and_unstable_lrs_of_a_sweep_with_an_unstable_top_lr():
    summary = sweep.summary(study("sweep_edge_classifier"))
    assert summary["metric"] == "train_loss"
    assert summary["best_lr"] == 0.1
    assert summary["unstable_lrs"] == [0.25]
    assert [p["stable"] for p in summary["lrs"]] == [True, True, True, False]


def test_a_diverged_lr_scores_worst_and_is_unstable():
    case = study("sweep_far_divergence")
    found = sweep.main_sweep(case)
    top = found.points[-1]
    assert top.lr == 3.0 and top.diverged and top.score == float("inf")
    assert found.best_lr == 0.03
    assert sweep.summary(case)["unstable_lrs"] == [3.0]


@pytest.mark.parametrize("factor", [1e-4, 1e4])
def test_the_sweep_is_scale_free(factor):
    case = study("sweep_edge_classifier")
    scaled = rescaled(case, factor)
    original, changed = sweep.summary(case), sweep.summary(scaled)
    assert changed["best_lr"] == original["best_lr"] == 0.1
    assert changed["unstable_lrs"] == original["unstable_lrs"]
    assert changed["lrs"][0]["score"] == pytest.approx(original["lrs"][0]["score"] * factor)


def test_swarm_view_of_a_momentum_by_lr_grid():
    case = study("swarm_slow_cells_disagree")
    view = sweep.swarm(case)
    assert view["axes"] == ["momentum", "lr"]
    cells = {(c["momentum"], c["lr"]): c for c in view["cells"]}
    assert set(cells) == {(0.9, 0.002), (0.9, 0.01), (0.95, 0.002), (0.95, 0.01)}
    assert all(len(c["runs"]) == 4 for c in cells.values())
    # lr 0.01 fits on every seed; lr 0.002 is slow and mostly does not.
    assert cells[(0.9, 0.01)]["fit"] == 4 and cells[(0.95, 0.01)]["fit"] == 4
    assert cells[(0.9, 0.002)]["fit"] < 4 and cells[(0.95, 0.002)]["fit"] < 4
    # A seed fits when its final loss is within 2x of the study's best final loss.
    finals = [v for c in cells.values() for v in c["final_losses"]]
    assert view["best_final_loss"] == min(finals)
    for cell in cells.values():
        assert cell["fit"] == sum(v <= 2 * min(finals) for v in cell["final_losses"])
    # The swarm grid is also momentum-by-lr sweeps: lr* is reported from the best momentum's sweep.
    assert sweep.summary(case)["best_lr"] == 0.01


# -- edge cases ------------------------------------------------------------------------------


def test_one_run_is_not_a_sweep():
    case = Study("s", [make_run("a", decaying(), 0.1)])
    summary = sweep.summary(case)
    assert sweep.main_sweep(case) is None
    assert summary["best_lr"] is None and summary["lrs"] == [] and summary["swarm"] is None


def test_two_lrs_form_a_sweep():
    case = Study("s", [make_run("a", decaying(end=0.2), 0.1), make_run("b", decaying(end=0.1), 0.3)])
    assert sweep.main_sweep(case).best_lr == 0.3


def test_every_run_diverged_gives_no_lr_star():
    runs = [make_run(f"r{lr}", [np.nan] * 50, lr) for lr in (0.1, 0.3, 1.0)]
    summary = sweep.summary(Study("s", runs))
    assert summary["best_lr"] is None
    assert all(p["score"] == float("inf") and not p["stable"] for p in summary["lrs"])
    assert summary["unstable_lrs"] == [0.1, 0.3, 1.0]


def test_nan_at_step_zero_scores_worst():
    nan_run = make_run("bad", [np.nan] + list(decaying(end=0.01)[1:]), 1.0)
    nan_run = dataclasses.replace(nan_run, steps=nan_run.steps.assign(loss=[np.nan] * nan_run.n_steps))
    case = Study("s", [make_run("a", decaying(end=0.2), 0.1), make_run("b", decaying(end=0.1), 0.3), nan_run])
    found = sweep.main_sweep(case)
    assert found.points[-1].score == float("inf") and found.best_lr == 0.3


def test_status_diverged_scores_worst():
    case = Study("s", [make_run("a", decaying(end=0.2), 0.1), make_run("b", decaying(end=0.01), 0.3, status="diverged")])
    assert sweep.main_sweep(case).best_lr == 0.1


def test_runs_of_different_lengths_are_compared_at_the_shortest_runs_last_step():
    # The lr 0.1 run is 3x longer; at its end it is lower, but at step 99 lr 0.3 is ahead.
    long_run = make_run("long", decaying(n=300, end=0.05), 0.1)
    short_run = make_run("short", decaying(n=100, end=0.3), 0.3)
    found = sweep.main_sweep(Study("s", [long_run, short_run]))
    assert found.horizon_step == 99
    assert found.best_lr == 0.3
    assert "different lengths" in found.notes[0]


def test_seeds_are_aggregated_by_their_median():
    runs = [make_run(f"a{s}", decaying(end=end, seed=s), 0.1, seed=s) for s, end in enumerate((0.1, 0.12, 0.5))]
    runs += [make_run(f"b{s}", decaying(end=end, seed=s), 0.3, seed=s) for s, end in enumerate((0.11, 0.13, 0.14))]
    found = sweep.main_sweep(Study("s", runs))
    assert found.best_lr == 0.1  # median 0.12 beats 0.13 despite the 0.5 seed
    assert found.points[0].score_max == pytest.approx(sweep.end_loss(runs[2]))


def test_probe_roles_are_not_members_of_the_sweep():
    runs = [
        make_run("a", decaying(end=0.2), 0.1),
        make_run("b", decaying(end=0.1), 0.3),
        make_run("short", decaying(end=0.01), 0.6, role="short"),
        make_run("range", decaying(end=0.01), 10.0, role="lr_range"),
    ]
    assert sweep.main_sweep(Study("s", runs)).lrs == [0.1, 0.3]


def test_runs_differing_in_more_than_lr_form_separate_sweeps():
    runs = [
        make_run("a", decaying(end=0.2), 0.1, batch_size=32),
        make_run("b", decaying(end=0.1), 0.3, batch_size=32),
        make_run("c", decaying(end=0.05), 0.1, batch_size=256),
        make_run("d", decaying(end=0.08), 0.3, batch_size=256),
    ]
    found = sweep.sweeps(Study("s", runs))
    assert sorted(tuple(s.lrs) for s in found) == [(0.1, 0.3), (0.1, 0.3)]
    assert sweep.main_sweep(Study("s", runs)).fixed == {"batch_size": 256}


def test_validation_metric_needs_evals_on_every_live_run():
    with_evals = make_run("a", decaying(end=0.2), 0.1, evals=[(100, 0.5), (200, 0.3)])
    without = make_run("b", decaying(end=0.1), 0.3)
    assert sweep.main_sweep(Study("s", [with_evals, without])).metric == "train_loss"


def test_climb_finds_a_loss_that_ends_far_above_its_best_and_not_a_healthy_one():
    rng = np.random.default_rng(0)
    healthy = decaying(noise=0.3)
    climbing = np.concatenate([decaying(n=150, end=0.1), 0.1 * np.exp(np.linspace(0, 3, 150))])
    climbing *= np.exp(0.3 * rng.standard_normal(300))
    assert sweep.climb(make_run("h", healthy, 0.1)) is None
    start, end, ratio = sweep.climb(make_run("c", climbing, 0.1))
    assert 120 <= start <= 180 and end == 299 and ratio > 5


def climb_by_definition(run: Run):
    """``sweep.climb``'s documented measure computed directly, without its shortcuts: the median of the last 10% of
    the finite losses over the lowest centered rolling median (10% of the points) of ~1000 block medians."""
    updates = run.updates()
    keep = np.isfinite(updates["loss"].to_numpy())
    steps, loss = updates["step"].to_numpy()[keep], updates["loss"].to_numpy()[keep]
    if loss.size < 20 or (loss <= 0).any():
        return None
    block = max(1, loss.size // 1000)
    count = loss.size // block
    coarse = np.median(loss[: count * block].reshape(count, block), axis=1)
    level = pd.Series(coarse).rolling(max(5, round(count * 0.1)) | 1, center=True, min_periods=1).median()
    best = int(level.to_numpy().argmin())
    ratio = np.median(loss[-(max(5, round(loss.size * 0.1)) | 1):]) / level[best]
    return None if ratio < 2 else (int(steps[best * block]), int(steps[-1]), ratio)


@pytest.mark.parametrize("name", ["sweep_edge_classifier", "sweep_edge_slow_climb", "sweep_edge_regression_valid"])
def test_climb_is_its_definition_on_every_seed_of_real_sweeps(name):
    for run in study(name).runs:
        assert sweep.climb(run) == climb_by_definition(run), run.name


def test_climb_is_its_definition_on_long_runs_seen_as_block_medians():
    rng = np.random.default_rng(1)
    healthy = decaying(n=25_000, noise=0.3)
    climbing = np.concatenate([decaying(n=10_000, end=0.1), 0.1 * np.exp(np.linspace(0, 2, 15_003))])
    climbing *= np.exp(0.3 * rng.standard_normal(climbing.size))
    for run in (make_run("h", healthy, 0.1), make_run("c", climbing, 0.1)):
        assert sweep.climb(run) == climb_by_definition(run)
    assert sweep.climb(run) is not None


def test_warmup_plan_follows_the_playbook():
    plan = sweep.warmup_plan(0.3, 15_000)
    assert plan["base_lr"] == 3.0
    assert plan["warmup_steps"] == [10, 100, 1000]  # orders of magnitude, the largest <= 10% of max_steps
    assert plan["post_warmup_steps"] == [20, 200, 2000]
    assert plan["max_steps"] == [15_010, 15_100, 16_000]
    notes = [e.get("note") for e in plan["experiments"]]
    assert notes[:2] == [None, None] and "over 5%" in notes[2]  # 1000 > 5% of 15000
    assert [e.get("note") for e in sweep.warmup_plan(0.3, 20_000)["experiments"]] == [None] * 3  # 1000 = 5%
    assert sweep.warmup_plan(0.3, 3000)["warmup_steps"] == [10, 100, 300]
    assert sweep.warmup_plan(0.3, 50)["warmup_steps"] == [5]
    assert sweep.warmup_plan(0.3, None)["max_steps"] is None


def test_a_key_only_some_runs_log_does_not_split_the_sweep_and_an_lr_alias_is_the_lr():
    runs = [
        make_run("a", decaying(end=0.2), 0.1, dropout=0.05, learning_rate=0.1, weight_decay=0),
        make_run("b", decaying(end=0.1), 0.3, dropout=0.05, learning_rate=0.3),
        make_run("c", decaying(end=0.15), 1.0, dropout=0.05, learning_rate=1.0, weight_decay=0),
    ]
    assert sweep.main_sweep(Study("s", runs)).lrs == [0.1, 0.3, 1.0]


def test_a_random_search_puts_each_config_with_its_own_seeds_only():
    runs = [make_run(f"wd{i}-s{seed}", decaying(n=30, seed=seed), 0.1, seed=seed, wd=i, extra=i % 3)
            for i in range(60) for seed in (0, 1)]
    runs.append(make_run("less-logged", decaying(n=30), 0.1, seed=5, wd=7))  # no ``extra``: joins wd 7
    cells = sweep.seed_cells(Study("s", runs))
    assert len(cells) == 60
    assert all({run.config["wd"] for run in group} == {config["wd"]} for config, group in cells)
    assert [len(group) for config, group in cells if config["wd"] == 7] == [3]


def test_runs_sharing_lr_and_seed_are_not_a_sweep_nor_a_swarm():
    # Two different models logged with the same lr and seed: the config does not tell them apart.
    runs = [
        make_run("llama", decaying(end=0.2), 2e-4, seed=42, batch_size=2),
        make_run("qwen", decaying(end=0.6), 2e-4, seed=42, batch_size=2),
        make_run("qwen-lora", decaying(end=0.3), 3e-4, seed=3407, batch_size=2),
    ]
    summary = sweep.summary(Study("s", runs))
    assert summary["best_lr"] is None and summary["swarm"] is None
