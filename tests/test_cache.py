"""The run cache: what invalidates an entry, what an entry keeps, and the detector's memo on long runs."""

from __future__ import annotations

import json
import math
import os
import pickle

import numpy as np

from diagnose import instability
from diagnose.cache import RunCache
from diagnose.pipeline import analyze_root

HEALTHY = "step,loss,grad_norm\n" + "".join(f"{i},{1 / (1 + i)!r},1\n" for i in range(100))


def hf_state(losses: list[float]) -> str:
    history = [{"step": i + 1, "loss": loss, "grad_norm": 1.0, "learning_rate": 1e-3} for i, loss in enumerate(losses)]
    return json.dumps({"global_step": len(losses), "max_steps": 40, "log_history": history})


def test_a_new_checkpoint_of_a_hugging_face_run_is_a_change(tmp_path):
    run = tmp_path / "logs" / "hf" / "run"
    (run / "checkpoint-20").mkdir(parents=True)
    (run / "checkpoint-20" / "trainer_state.json").write_text(hf_state([2.0 / (1 + i) for i in range(20)]))
    cache = RunCache(tmp_path / "cache")
    first = analyze_root(tmp_path / "logs", jobs=1, cache=cache).document.to_dict()["runs"]
    assert first[0]["steps"] == 20

    # the trainer resumed and wrote a newer checkpoint: only a subfolder changed
    (run / "checkpoint-40").mkdir()
    (run / "checkpoint-40" / "trainer_state.json").write_text(hf_state([2.0 / (1 + i) for i in range(40)]))
    again = analyze_root(tmp_path / "logs", jobs=1, cache=cache).document.to_dict()["runs"]
    assert again[0]["steps"] == 40


def test_a_cached_run_keeps_where_its_columns_came_from(tmp_path):
    run = tmp_path / "logs" / "hf" / "run"
    run.mkdir(parents=True)
    (run / "trainer_state.json").write_text(hf_state([2.0 / (1 + i) for i in range(40)]))
    cache = RunCache(tmp_path / "cache")
    cold = analyze_root(tmp_path / "logs", jobs=1, cache=cache).studies[0].runs[0]
    warm = analyze_root(tmp_path / "logs", jobs=1, cache=cache).studies[0].runs[0]
    assert cold.sources and warm.sources == cold.sources


def test_a_warm_run_brings_its_instability_events_from_the_cache(tmp_path, make_run):
    spiky = "step,loss\n" + "".join(f"{i},{(5.0 if 300 <= i < 330 else 1.0) * (1 + 0.02 * math.sin(i))!r}\n"
                                    for i in range(600))
    make_run(tmp_path / "logs" / "s" / "spiky", steps=spiky, status="finished")
    cache = RunCache(tmp_path / "cache")
    cold = analyze_root(tmp_path / "logs", jobs=1, cache=cache)
    found = instability.memoised(cold.studies[0].runs[0])
    assert found and any(events for events in found.values())

    warm = analyze_root(tmp_path / "logs", jobs=1, cache=cache)
    assert instability.memoised(warm.studies[0].runs[0]) == found
    assert warm.document.to_dict()["findings"] == cold.document.to_dict()["findings"]


def test_events_travel_with_a_pickled_run(tmp_path, make_run):
    make_run(tmp_path / "logs" / "s" / "r", steps=HEALTHY, status="finished")
    run = analyze_root(tmp_path / "logs", jobs=1).studies[0].runs[0]
    instability.run_instability(run)
    assert instability.memoised(pickle.loads(pickle.dumps(run))) == instability.memoised(run)


def long_loss(n: int, rng) -> np.ndarray:
    loss = (2.0 * np.exp(-np.arange(n) / (n / 5)) + 0.2) * np.exp(rng.normal(0, 0.05, n))
    return loss


def test_a_long_run_is_checked_in_blocks_and_keeps_its_spike_and_its_divergence(tmp_path, make_run):
    rng = np.random.default_rng(0)
    n = 100_000
    steps = np.arange(n)
    spiked = long_loss(n, rng)
    spiked[50_000:50_500] *= 8
    diverged = long_loss(n, rng)
    diverged[80_000:] = np.inf

    events = instability.run_instability(_run(tmp_path / "a", make_run, steps, spiked))
    assert len(events) == 1
    spike = events[0]
    block = -(-n // instability.BLOCK_TARGET)  # the period is right to within a block
    assert abs(spike.start_step - 50_000) < block and abs(spike.end_step - 50_499) < block
    assert spike.recovered and not spike.nonfinite
    assert spike.max_loss == spiked[spike.start_step : spike.end_step + 1].max()  # raw, not a block median

    broken = instability.run_instability(_run(tmp_path / "b", make_run, steps, diverged))
    assert broken[-1].nonfinite and broken[-1].start_step <= 80_000 <= broken[-1].end_step

    quiet = instability.run_instability(_run(tmp_path / "c", make_run, steps, long_loss(n, rng)))
    assert quiet == []


def test_runs_up_to_the_long_run_limit_are_seen_point_by_point(tmp_path, make_run):
    rng = np.random.default_rng(1)
    n = instability.LONG_RUN_POINTS
    loss = long_loss(n, rng)
    loss[n // 2 : n // 2 + 4] *= 8  # four steps: shorter than a block would keep
    run = _run(tmp_path / "a", make_run, np.arange(n), loss)
    steps, values = instability.run_loss(run)
    events = instability.run_instability(run)
    assert events == instability.find_instability(steps, values)
    assert any(n // 2 - 5 <= e.start_step <= n // 2 for e in events)


def _run(folder, make_run, steps, loss):
    text = "step,loss\n" + "\n".join(f"{s},{v!r}" for s, v in zip(steps.tolist(), loss.tolist())) + "\n"
    make_run(folder / "logs" / "s" / "r", steps=text, status="finished")
    return analyze_root(folder / "logs", jobs=1, checks=()).studies[0].runs[0]


def test_an_entry_without_the_new_fields_is_read_again(tmp_path, make_run):
    make_run(tmp_path / "logs" / "s" / "r", steps=HEALTHY, status="finished")
    cache = RunCache(tmp_path / "cache")
    first = analyze_root(tmp_path / "logs", jobs=1, cache=cache).document.to_dict()["runs"]
    for checked in (tmp_path / "cache").glob("*/*/checks-*.json"):
        stale = json.loads(checked.read_text())
        del stale["instability"]
        checked.write_text(json.dumps(stale))
    assert analyze_root(tmp_path / "logs", jobs=1, cache=cache).document.to_dict()["runs"] == first
    assert all("instability" in json.loads(p.read_text()) for p in (tmp_path / "cache").glob("*/*/checks-*.json"))
    assert os.listdir(tmp_path / "cache")
