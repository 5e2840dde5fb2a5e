"""Many run folders' cache keys: half found in a forked process, the same keys as found in one; a child that
fails costs its half done here, never a wrong or missing key."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from diagnose import pipeline
from diagnose.cache import RunCache
from diagnose.readers.keys import DEFAULT_KEYS

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="keys are found in a forked process on Linux only")


@pytest.fixture
def folders(tmp_path, make_run) -> list[tuple[Path, str]]:
    runs = [make_run(tmp_path / "logs" / f"s{i % 3}" / f"r{i}", status="finished") for i in range(9)]
    (runs[4] / "extra").mkdir()
    (runs[4] / "extra" / "state.json").write_text("{}")  # a subfolder's file is part of a key too
    return [(run, "diagnose.readers.rundir") for run in runs]


def keys(tmp_path, folders, jobs, cache_type=RunCache) -> list[str]:
    return pipeline._run_keys(tmp_path / "logs", folders, cache_type(tmp_path / "cache"), None, DEFAULT_KEYS, jobs)


def test_half_the_keys_found_in_a_forked_process_are_the_keys(tmp_path, folders, monkeypatch):
    alone = keys(tmp_path, folders, jobs=1)
    monkeypatch.setattr(pipeline, "FORKED_KEYS_MIN", 2)
    children = []
    forked = pipeline._forked
    monkeypatch.setattr(pipeline, "_forked", lambda work: children.append(work) or forked(work))
    assert keys(tmp_path, folders, jobs=2) == alone and len(set(alone)) == len(folders)
    assert len(children) == 1


def test_a_failed_child_costs_its_half_done_here(tmp_path, folders, monkeypatch):
    alone = keys(tmp_path, folders, jobs=1)
    monkeypatch.setattr(pipeline, "FORKED_KEYS_MIN", 2)
    parent = os.getpid()

    class FailsInChild(RunCache):
        def key(self, *args):
            if os.getpid() != parent:
                raise OSError("a child that fails")
            return super().key(*args)

    assert keys(tmp_path, folders, jobs=2, cache_type=FailsInChild) == alone
    monkeypatch.setattr(pipeline, "_forked", lambda work: lambda: None)  # no fork at all
    assert keys(tmp_path, folders, jobs=2) == alone
