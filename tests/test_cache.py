"""The run cache: what invalidates an entry, what an entry keeps, and the detector's memo on long runs."""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest

from diagnose import cache as cache_module
from diagnose import files, instability
from diagnose.cache import RunCache, StudyCache
from diagnose.checks import CHECKS
from diagnose.pipeline import analyze_root
from diagnose.readers import rundir
from comparable import document

REPO = Path(__file__).resolve().parent.parent
HEALTHY = "step,loss,grad_norm\n" + "".join(f"{i},{1 / (1 + i)!r},1\n" for i in range(100))
DIVERGED = "step,loss,grad_norm\n" + "".join(f"{i},{'inf' if i > 50 else 1.0},1\n" for i in range(100))


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


def test_a_warm_run_brings_its_instability_events_from_the_cache(tmp_path, make_run, monkeypatch):
    spiky = "step,loss\n" + "".join(f"{i},{(5.0 if 300 <= i < 330 else 1.0) * (1 + 0.02 * math.sin(i))!r}\n"
                                    for i in range(600))
    make_run(tmp_path / "logs" / "s" / "spiky", steps=spiky, status="finished")
    cache = RunCache(tmp_path / "cache")
    cold = analyze_root(tmp_path / "logs", jobs=1, cache=cache)
    found = instability.memoised(cold.studies[0].runs[0])
    assert found and any(events for events in found.values())

    searched = []
    search = instability.find_instability
    monkeypatch.setattr(instability, "find_instability", lambda *args: searched.append(args) or search(*args))
    warm = analyze_root(tmp_path / "logs", jobs=1, cache=cache)
    # made from the entry when a study's work asks (a run from ``RunCache.load_many`` keeps them as JSON until then)
    StudyCache(cache.directory, {}, CHECKS).prepare(warm.studies[0])
    assert instability.memoised(warm.studies[0].runs[0]) == found and searched == []
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
    [entry] = (tmp_path / "cache").glob("*/*.run")
    data = entry.read_bytes()
    *tables, _, steps_digest, evals_digest, _, tag, version = cache_module._TRAILER.unpack(
        data[-cache_module._TRAILER.size:])
    stale = json.loads(data[tables[-1]:-cache_module._TRAILER.size])
    for checked in stale["checks"].values():
        del checked["instability"]
    text = json.dumps(stale).encode()
    entry.write_bytes(data[:tables[-1]] + text + cache_module._TRAILER.pack(
        *tables, tables[-1] + len(text), steps_digest, evals_digest, zlib.crc32(text), tag, version))
    shutil.rmtree(tmp_path / "cache" / "roots")  # the root's record holds the JSON as written: an old entry has none
    assert analyze_root(tmp_path / "logs", jobs=1, cache=RunCache(tmp_path / "cache")).document.to_dict()["runs"] == first
    [entry] = (tmp_path / "cache").glob("*/*.run")
    meta = json.loads(cache_module._meta_text(str(entry)))
    assert all("instability" in checked for checked in meta["checks"].values())


@pytest.fixture
def sweeps(tmp_path, make_run):
    """Two lr sweeps of four runs: the one in s1 has a run that diverges above lr*."""
    for study in ("s0", "s1"):
        for i, lr in enumerate((0.01, 0.03, 0.1, 0.3)):
            steps = DIVERGED if study == "s1" and lr == 0.3 else HEALTHY
            make_run(tmp_path / "logs" / study / f"lr{lr}", steps=steps, config={"lr": lr, "seed": 0},
                     status="finished")
    return tmp_path / "logs"


@pytest.fixture
def table_reads(monkeypatch):
    """(folder, table name) of each cached table read."""
    reads = []
    original = cache_module._read_table
    monkeypatch.setattr(cache_module, "_read_table",
                        lambda entry, source, name: reads.append((source[1], name)) or original(entry, source, name))
    return reads


def test_a_warm_run_with_unchanged_studies_reads_no_table_and_writes_the_same_document(sweeps, tmp_path, table_reads):
    cache = RunCache(tmp_path / "cache")
    cold = analyze_root(sweeps, jobs=1, cache=cache)
    warm = analyze_root(sweeps, jobs=1, cache=cache)
    assert table_reads == []
    assert document(warm) == document(cold) == document(analyze_root(sweeps, jobs=1))
    assert set(warm.study_digests) == {"s0", "s1"} and warm.study_digests == cold.study_digests
    # what renderers choose figures by is known without the tables; the tables come on first use
    run = warm.run("s1", "lr0.3")
    assert run.has("grad_norm") and not run.has("lr") and not run.has_valid_evals() and table_reads == []
    assert run.n_steps == 100 and table_reads == [(run.source, "steps")]  # each table when it is used
    assert run.valid_evals().empty and table_reads == [(run.source, "steps"), (run.source, "evals")]
    assert analyze_root(sweeps, jobs=1).study_digests == {}


def test_a_changed_run_checks_its_study_again_and_only_it(sweeps, tmp_path, table_reads):
    cache = RunCache(tmp_path / "cache")
    cold = analyze_root(sweeps, jobs=1, cache=cache)
    changed = sweeps / "s0" / "lr0.3" / "steps.csv"
    changed.write_text(DIVERGED)
    os.utime(changed, (1, 1))
    warm = analyze_root(sweeps, jobs=1, cache=cache)
    assert warm.study_digests["s1"] == cold.study_digests["s1"]
    assert warm.study_digests["s0"] != cold.study_digests["s0"]
    assert table_reads and all(folder.parent.name == "s0" for folder, _ in table_reads)
    assert document(warm) == document(analyze_root(sweeps, jobs=1)) != document(cold)


def test_a_corrupt_study_entry_is_dropped_and_the_study_checked_again(sweeps, tmp_path):
    cache = RunCache(tmp_path / "cache")
    cold = analyze_root(sweeps, jobs=1, cache=cache)
    entries = list((tmp_path / "cache" / "studies").glob("*/*.json"))
    assert len(entries) == 2
    whole = entries[1].read_bytes()
    at = whole.index(b'"study":"') + len(b'"study":"')
    entries[0].write_text("{not json")
    entries[1].write_bytes(whole[:at] + bytes([whole[at] ^ 0x20]) + whole[at + 1:])  # the study's name: still JSON
    assert document(analyze_root(sweeps, jobs=1, cache=cache)) == document(cold)
    assert [entry.read_bytes() for entry in entries[1:]] == [whole]
    # checksummed as written, but of the wrong shape
    entries[1].write_bytes(b"".join(files.sealed([json.dumps({"findings": [{"check": "divergence"}]}).encode()])))
    assert document(analyze_root(sweeps, jobs=1, cache=cache)) == document(cold)
    assert all("summary" in work for entry in entries for work in json.loads(entry.read_bytes()[9:])["work"].values())


def test_other_settings_or_other_code_never_reuse_a_study(sweeps, tmp_path, monkeypatch):
    cache = RunCache(tmp_path / "cache")
    first = analyze_root(sweeps, jobs=1, cache=cache).study_digests
    tuned = tuple(c.configured({"max_ratio": "2"}) if c.id == "unstable_above_best_lr" else c for c in CHECKS)
    assert set(analyze_root(sweeps, tuned, jobs=1, cache=cache).study_digests.values()).isdisjoint(first.values())
    monkeypatch.setattr(cache_module, "code_version", lambda: "edited")
    assert set(analyze_root(sweeps, jobs=1, cache=cache).study_digests.values()).isdisjoint(first.values())


def test_other_run_check_settings_reuse_the_parsed_run_and_keep_their_findings_beside_its_entry(
        sweeps, tmp_path, monkeypatch, table_reads):
    cache = RunCache(tmp_path / "cache")
    analyze_root(sweeps, jobs=1, cache=cache)
    tuned = tuple(c.configured({"start_factor": "100"}) if c.id == "divergence" else c for c in CHECKS)
    parsed = []
    original = rundir.read
    monkeypatch.setattr(rundir, "read", lambda folder, *args, **kwargs: parsed.append(folder) or original(
        folder, *args, **kwargs))
    again = analyze_root(sweeps, tuned, jobs=1, cache=cache)
    assert parsed == [] and len(list((tmp_path / "cache").glob("*/*.run.checks/*.json"))) == 8
    table_reads.clear()
    assert document(analyze_root(sweeps, tuned, jobs=1, cache=cache)) == document(again)
    assert table_reads == [] and parsed == []
    assert document(again) == document(analyze_root(sweeps, tuned, jobs=1))


def test_a_study_with_a_running_run_is_not_cached(tmp_path, make_run):
    make_run(tmp_path / "logs" / "s" / "done", steps=HEALTHY, status="finished")
    make_run(tmp_path / "logs" / "s" / "live", steps=HEALTHY, status="running")
    analysis = analyze_root(tmp_path / "logs", jobs=1, cache=RunCache(tmp_path / "cache"))
    assert analysis.study_digests == {}
    assert not (tmp_path / "cache" / "studies").exists()


def test_a_table_damaged_after_the_entry_was_loaded_is_read_from_the_run_again(sweeps, tmp_path):
    cache = RunCache(tmp_path / "cache")
    cold = analyze_root(sweeps, jobs=1, cache=cache).run("s1", "lr0.3")
    warm = analyze_root(sweeps, jobs=1, cache=cache).run("s1", "lr0.3")
    for entry in (tmp_path / "cache").glob("*/*.run"):
        entry.write_bytes(b"garbage")
    assert warm.steps.equals(cold.steps) and warm.evals.equals(cold.evals)
    # only the damaged entry that was read is dropped
    assert len(list((tmp_path / "cache").glob("*/*.run"))) == 7


@pytest.mark.parametrize("read", ["mapped", "copied"])
@pytest.mark.parametrize("table", ["steps", "evals"])
def test_a_changed_bit_of_a_cached_number_is_damage_and_the_run_is_read_again(tmp_path, make_run, monkeypatch,
                                                                             table, read):
    """A flipped bit of a loss leaves a table that reads: only the table's checksum tells it from what was stored."""
    monkeypatch.setattr(cache_module, "_MAPPED_FROM", 0 if read == "mapped" else 1 << 40)
    evals = "step,split,loss\n" + "".join(f"{i},valid,{2 / (1 + i)!r}\n" for i in range(0, 100, 10))
    make_run(tmp_path / "logs" / "s" / "r", steps=HEALTHY, evals=evals, status="finished")
    cache = RunCache(tmp_path / "cache")
    cold = analyze_root(tmp_path / "logs", jobs=1, cache=cache).run("s", "r")
    warm = analyze_root(tmp_path / "logs", jobs=1, cache=cache).run("s", "r")
    [entry] = (tmp_path / "cache").glob("*/*.run")
    data = bytearray(entry.read_bytes())
    at = data.index(getattr(cold, table)["loss"].to_numpy()[3].tobytes())
    data[at] ^= 1  # the last bit of the value's mantissa
    entry.write_bytes(bytes(data))
    assert getattr(warm, table).equals(getattr(cold, table))
    assert not entry.exists()


def test_editing_analysis_code_changes_the_fingerprint_and_editing_a_renderer_or_the_cli_does_not(tmp_path):
    package = tmp_path / "diagnose"
    shutil.copytree(Path(cache_module.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    before = cache_module.analysis_fingerprint(package)
    for edited in ("render/html.py", "probe/probe.py", "cli.py"):
        (package / edited).write_text((package / edited).read_text() + "\n# edited\n")
    assert cache_module.analysis_fingerprint(package) == before
    (package / "checks" / "divergence.py").write_text("# edited\n")
    assert cache_module.analysis_fingerprint(package) != before


@pytest.mark.parametrize("logs", [REPO / "samples", REPO.parent / "shared" / "realworld"], ids=["samples", "realworld"])
def test_every_table_reads_back_from_its_entry_as_it_was_read(logs, tmp_path):
    if not logs.is_dir():
        pytest.skip(f"{logs} is absent (it ships beside the repository only in the project's workspace)")
    cache = RunCache(tmp_path / "cache")
    cold = analyze_root(logs, jobs=1, cache=cache)
    warm = analyze_root(logs, jobs=1, cache=cache)
    for study in cold.studies:
        for run in study.runs:
            again = warm.run(study.name, run.name)
            for name in ("steps", "evals"):
                before, after = getattr(run, name), getattr(again, name)
                assert list(after.dtypes) == list(before.dtypes), (run.key, name)
                assert after.columns.equals(before.columns) and after.index.equals(before.index)
                assert after.equals(before), (run.key, name)


def test_a_long_cached_table_reads_back_as_views_of_its_file_not_copies(tmp_path, make_run):
    # past pyarrow's 64k rows per batch: stored as one batch, mapped, one block per column
    losses = 1 / (1 + np.arange(70_000))
    steps = "step,loss\n" + "".join(f"{i},{float(v)!r}\n" for i, v in enumerate(losses))
    make_run(tmp_path / "logs" / "s" / "long", steps=steps, status="finished")
    cache = RunCache(tmp_path / "cache")
    analyze_root(tmp_path / "logs", jobs=1, cache=cache)
    [entry] = (tmp_path / "cache").glob("*/*.run")
    warm = analyze_root(tmp_path / "logs", jobs=1, cache=cache).run("s", "long")
    loss = warm.steps["loss"].to_numpy()
    assert np.array_equal(loss, losses) and not loss.flags.owndata and not loss.flags.writeable
