"""What a run cache entry leaves out or shares to be cheaper (fields at their default, settings' objects, column
names) reads back as the run had it; a damaged entry goes with the findings kept beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from diagnose import cache as cache_module
from diagnose import instability
from diagnose.cache import RunCache
from diagnose.instability import InstabilityConfig
from diagnose.model import Run

KEY = "ab" + "0" * 30 + ".root." + "1" * 32


def a_run(tmp_path: Path, **fields) -> Run:
    steps = pd.DataFrame({"step": np.arange(4, dtype=np.int64), "loss": [4.0, 3.0, 2.0, 1.0]})
    return Run(name="r", study="s", source=tmp_path / "logs" / "s" / "r", steps=steps, status="finished", **fields)


def source(tmp_path: Path) -> tuple:
    return (tmp_path / "logs", tmp_path / "logs" / "s" / "r", "diagnose.readers.rundir", None)


def test_fields_at_their_default_or_not_read_back_as_the_run_had_them(tmp_path):
    unusual = dict(role="short", notes=["cut short"], sources={"loss": "train/loss"},
                   nan_steps={"loss": np.array([2], dtype=np.int64)}, format="other/1")
    for version, fields in (("2", {}), ("3", unusual)):  # another version of the run each: a new entry
        cache = RunCache(tmp_path / "cache")
        run = a_run(tmp_path, **fields)
        key = KEY[:-32] + version * 32
        assert cache.store(key, run, "checks", [], [])
        again, _, _ = cache.load(key, "checks", source(tmp_path))
        for name in ("role", "notes", "sources", "format", "config"):
            assert getattr(again, name) == getattr(run, name), name
        assert again.nan_steps.keys() == run.nan_steps.keys()
        assert all(np.array_equal(again.nan_steps[k], v) for k, v in run.nan_steps.items())
    # defaults are the run's own, not shared between runs
    assert cache.store(KEY, a_run(tmp_path), "checks", [], [])
    one, _, _ = cache.load(KEY, "checks", source(tmp_path))
    two, _, _ = cache.load(KEY, "checks", source(tmp_path))
    one.notes.append("x")
    one.sources["lr"] = "x"
    assert two.notes == [] and two.sources == {} and one.nan_steps is not two.nan_steps


def test_instability_settings_read_back_equal_and_shared(tmp_path):
    cache = RunCache(tmp_path / "cache")
    run = a_run(tmp_path)
    config = InstabilityConfig(z=6.0, min_points=5)
    instability.remember(run, {config: [], InstabilityConfig(): []})
    assert cache.store(KEY, run, "checks", [], [])
    one, _, _ = cache.load(KEY, "checks", source(tmp_path))
    two, _, _ = cache.load(KEY, "checks", source(tmp_path))
    assert instability.memoised(one) == {config: [], InstabilityConfig(): []}
    assert [id(c) for c in instability.memoised(one)] == [id(c) for c in instability.memoised(two)]


def test_a_frame_whose_column_names_changed_is_written_with_its_new_names(tmp_path):
    run = a_run(tmp_path)
    batch = cache_module._record_batch(run.steps)
    assert batch.schema.names == ["step", "loss"]
    run.steps.columns = ["step", "other"]
    assert cache_module._record_batch(run.steps).schema.names == ["step", "other"]


def test_a_damaged_entry_goes_with_the_findings_of_other_settings_beside_it(tmp_path):
    cache = RunCache(tmp_path / "cache")
    assert cache.store(KEY, a_run(tmp_path), "checks", [], [])
    assert cache.store(KEY, a_run(tmp_path), "other", [], [])  # the entry holds this version: beside it
    entry = Path(cache._entry(KEY))
    beside = Path(f"{entry}.checks")
    assert [path.name for path in beside.iterdir()] == ["other.json"]
    entry.write_bytes(entry.read_bytes()[:-1])
    assert cache.load(KEY, "checks", source(tmp_path)) is None
    assert not entry.exists() and not beside.exists()
    # a new entry of the place: its findings, none of another settings' left
    assert cache.store(KEY, a_run(tmp_path), "checks", [], [])
    assert cache.load(KEY, "checks", source(tmp_path))[1] == []
    assert cache.load(KEY, "other", source(tmp_path))[1] is None
