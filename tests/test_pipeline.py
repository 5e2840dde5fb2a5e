"""Reading and checking a whole root: in worker processes, and again from the cache."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest

from diagnose import cache as cache_module
from diagnose import instability, pipeline
from diagnose.cache import RunCache
from diagnose.pipeline import analyze_root
from comparable import document

REPO = Path(__file__).resolve().parent.parent
DIVERGED = "step,loss,grad_norm\n" + "".join(f"{i},{'inf' if i > 50 else 1.0},1\n" for i in range(100))
HEALTHY = "step,loss,grad_norm\n" + "".join(f"{i},{1 / (1 + i)!r},1\n" for i in range(100))


@pytest.fixture
def root(tmp_path, make_run):
    for i in range(12):
        make_run(tmp_path / "logs" / f"s{i % 3}" / f"r{i}", steps=DIVERGED if i % 4 == 0 else HEALTHY,
                 config={"lr": 0.1 * (i + 1)}, status="finished")
    make_run(tmp_path / "logs" / "s0" / "broken", steps="step,loss\n0,x\n")
    return tmp_path / "logs"


def summary(analysis):
    document = analysis.document.to_dict()
    return (
        [(f["check"], f["study"], f["runs"], f["steps"], f["title"]) for f in document["findings"]],
        document["unreadable"],
        [(r["study"], r["name"], r["steps"]) for r in document["runs"]],
    )


def test_worker_processes_give_the_same_document_as_one_process(root, monkeypatch):
    serial = summary(analyze_root(root, jobs=1))
    monkeypatch.setattr(pipeline, "PARALLEL_MIN_BYTES", 0)
    parallel = summary(analyze_root(root, jobs=2))
    assert parallel == serial
    assert [f[0] for f in serial[0]].count("divergence") == 3
    assert len(serial[1]) == 1 and len(serial[2]) == 12


@pytest.mark.parametrize(("runs", "forks"), [(14, False), (13, True)])  # 13 folders: 12 runs, 1 broken
def test_many_small_runs_are_read_in_worker_processes(root, monkeypatch, runs, forks):
    # each run costs a few ms whatever its size: a root of many small ones is worth a pool, however few its bytes
    monkeypatch.setattr(pipeline, "PARALLEL_MIN_RUNS", runs)
    imported = []
    monkeypatch.setattr(pipeline, "_import_for_workers", lambda: imported.append(True))
    assert summary(analyze_root(root, jobs=2)) == summary(analyze_root(root, jobs=1))
    assert bool(imported) is forks


def test_a_rerun_takes_runs_from_the_cache_and_sees_a_changed_file(root, tmp_path):
    cache = RunCache(tmp_path / "cache")
    first = summary(analyze_root(root, jobs=1, cache=cache))
    entries = list((tmp_path / "cache").glob("*/*.run"))
    assert len(entries) == 12
    assert summary(analyze_root(root, jobs=1, cache=cache)) == first

    (root / "s1" / "r1" / "steps.csv").write_text(DIVERGED)
    os.utime(root / "s1" / "r1" / "steps.csv", (1, 1))
    changed = summary(analyze_root(root, jobs=1, cache=cache))
    assert ("divergence", "s1", ["r1"]) not in [f[:3] for f in first[0]]
    assert ("divergence", "s1", ["r1"]) in [f[:3] for f in changed[0]]


def test_a_corrupt_cache_entry_is_dropped_and_the_run_read_again(root, tmp_path):
    cache = RunCache(tmp_path / "cache")
    first = summary(analyze_root(root, jobs=1, cache=cache))
    entries = sorted((tmp_path / "cache").glob("*/*.run"))
    entries[0].write_text("{not json")  # shorter than the trailer
    for entry in entries[1:]:
        data = bytearray(entry.read_bytes())
        data[-200:] = b"x" * 200  # the JSON and the trailer
        entry.write_bytes(bytes(data))
    shutil.rmtree(tmp_path / "cache" / "roots")  # whose record would serve the runs without their entries
    assert summary(analyze_root(root, jobs=1, cache=RunCache(tmp_path / "cache"))) == first
    assert all(json.loads(cache_module._meta_text(str(entry)))["format"] == "diagnose.run/1" for entry in entries)


def test_a_running_run_is_never_cached(tmp_path, make_run):
    make_run(tmp_path / "logs" / "s" / "live", steps=HEALTHY, status="running")
    cache = RunCache(tmp_path / "cache")
    analyze_root(tmp_path / "logs", jobs=1, cache=cache)
    assert not list((tmp_path / "cache").glob("*/*.run"))


def test_an_unwritable_cache_costs_nothing_but_speed(root, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert summary(analyze_root(root, jobs=1, cache=RunCache(blocker / "cache"))) == summary(analyze_root(root, jobs=1))


def test_worker_processes_hand_back_the_instability_events_they_found(root, monkeypatch):
    monkeypatch.setattr(pipeline, "PARALLEL_MIN_BYTES", 0)
    analysis = analyze_root(root, jobs=2)
    # the study checks and the summary reuse them instead of running the detector again
    assert all(instability.memoised(run) for study in analysis.studies for run in study.runs)


def _write_root():
    """``write_root`` of benchmarks/analyzer_scale.py: sweeps of ten runs with a spike and a divergence each."""
    spec = importlib.util.spec_from_file_location("analyzer_scale", REPO / "benchmarks" / "analyzer_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_root


@pytest.mark.parametrize("source", ["samples", "generated"])
def test_the_findings_document_is_the_same_cold_warm_and_without_a_cache(source, tmp_path, monkeypatch):
    if source == "samples":
        root = REPO / "samples"
    else:
        root = tmp_path / "logs"
        _write_root()(root, runs=20, steps=2_000)
        monkeypatch.setattr(pipeline, "PARALLEL_MIN_BYTES", 0)  # workers hand back runs whose tables load later
    cache = RunCache(tmp_path / "cache")
    cold = document(analyze_root(root, jobs=2, cache=cache))
    warm = analyze_root(root, jobs=2, cache=cache)
    assert document(warm) == cold == document(analyze_root(root, jobs=2))
    assert len(warm.study_digests) == len(warm.studies)


@pytest.mark.parametrize("cached", [True, False])
def test_worker_processes_write_the_same_document_as_one_process(cached, tmp_path, monkeypatch):
    root = tmp_path / "logs"
    _write_root()(root, runs=30, steps=2_000)
    serial = document(analyze_root(root, jobs=1))
    monkeypatch.setattr(pipeline, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(pipeline, "PARALLEL_MIN_ROWS", 0)
    analysis = analyze_root(root, jobs=2, cache=RunCache(tmp_path / "cache") if cached else None)
    assert document(analysis) == serial
    runs = [run for study in analysis.studies for run in study.runs]
    # the runs came back from workers, and the study checks ran in workers too (nothing memoised here)
    assert all(instability.memoised(run) for run in runs)
    assert not any("_sweeps" in study.__dict__ for study in analysis.studies)
    # tables cross back only when the cache does not hold them; either way they are the run's
    assert all(("steps" in run.__dict__) is not cached for run in runs)
    again = analyze_root(root, jobs=1)
    assert all(run.steps.equals(again.run(run.study, run.name).steps) for run in runs[::7])


def test_without_a_cache_workers_hand_back_long_runs_through_the_scratch_directory(tmp_path, make_run, monkeypatch):
    logs = tmp_path / "logs"
    long = "step,loss,grad_norm\n" + "".join(f"{i},{1 / (1 + i)!r},1\n" for i in range(300))
    for i in range(4):
        make_run(logs / "s" / f"r{i}", steps=long if i % 2 else HEALTHY, config={"lr": 0.1 * (i + 1)},
                 status="running" if i == 3 else "finished")
    serial = document(analyze_root(logs, jobs=1))
    monkeypatch.setattr(pipeline, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(pipeline, "SCRATCH_MIN_ROWS", 200)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    analysis = analyze_root(logs, jobs=2, scratch=scratch)
    # long and finished: its tables load from its entry; the others' tables were sent (short, or never stored)
    lazy = {run.name for run in analysis.studies[0].runs if "_load_table" in run.__dict__}
    assert lazy == {"r1"}
    assert len(list(scratch.glob("*/*.run"))) == 1
    assert document(analysis) == serial
    assert not (tmp_path / "cache").exists()


def test_a_worker_sends_back_the_tables_of_a_run_the_cache_does_not_keep(tmp_path, make_run, monkeypatch):
    make_run(tmp_path / "logs" / "s1" / "live", steps=HEALTHY, status="running")
    make_run(tmp_path / "logs" / "s2" / "done", steps=HEALTHY, status="finished")
    monkeypatch.setattr(pipeline, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(pipeline, "PARALLEL_MIN_ROWS", 0)  # the study checks run in workers: this process reads nothing
    analysis = analyze_root(tmp_path / "logs", jobs=2, cache=RunCache(tmp_path / "cache"))
    live, done = analysis.run("s1", "live"), analysis.run("s2", "done")
    assert "steps" in live.__dict__ and "steps" not in done.__dict__
    assert len(done.steps) == len(live.steps) == 100


def test_the_run_workers_do_the_study_work_of_the_studies_they_see_whole(tmp_path, make_run, monkeypatch):
    logs = tmp_path / "logs"
    for i in range(10):  # a study too big for one share: split over the workers
        make_run(logs / "big" / f"r{i}", steps=HEALTHY, config={"lr": 0.1 * (i + 1)}, status="finished")
    for i in range(6):  # studies of one run each, and one whose second run is in another folder
        make_run(logs / f"s{i}" / "r", steps=DIVERGED if i == 2 else HEALTHY, config={"lr": 0.1 * (i + 1)},
                 status="finished", **({"study": "s0"} if i == 5 else {}))
    serial = document(analyze_root(logs, jobs=1))
    monkeypatch.setattr(pipeline, "PARALLEL_MIN_BYTES", 0)
    left = []
    study_works = pipeline._study_works
    monkeypatch.setattr(pipeline, "_study_works", lambda studies, *args: left.extend(s.name for s in studies)
                        or study_works(studies, *args))
    cache = RunCache(tmp_path / "cache")
    assert document(analyze_root(logs, jobs=2, cache=cache)) == serial
    assert sorted(left) == ["big", "s0"]

    # a re-run where two runs of a folder changed: their study is checked afterwards, the others come from the cache
    for run in ("r3", "r4"):
        (logs / "big" / run / "steps.csv").write_text(DIVERGED)
        os.utime(logs / "big" / run / "steps.csv", (1, 1))
    left.clear()
    changed = document(analyze_root(logs, jobs=2, cache=cache))
    assert changed == document(analyze_root(logs, jobs=1)) != serial
    assert left == ["big"]


def test_a_group_too_big_to_hold_leaves_its_study_to_the_study_phase(tmp_path, make_run, monkeypatch):
    logs = tmp_path / "logs"
    for study, count in (("small", 1), ("large", 3)):
        for i in range(count):
            make_run(logs / study / f"r{i}", steps=HEALTHY, config={"lr": 0.1 * (i + 1)}, status="finished")
    serial = document(analyze_root(logs, jobs=1))
    monkeypatch.setattr(pipeline, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(pipeline, "STUDY_ROWS_HELD", 250)  # two runs of 100 steps, not three
    left = []
    study_works = pipeline._study_works
    monkeypatch.setattr(pipeline, "_study_works", lambda studies, *args: left.extend(s.name for s in studies)
                        or study_works(studies, *args))
    analysis = analyze_root(logs, jobs=2, cache=RunCache(tmp_path / "cache"))
    assert document(analysis) == serial
    assert left == ["large"]
