"""Many run folders: a forked process finds and keys the folders below the second half of the walk's frontier,
the same folders, order and keys as found in one process; a child that fails costs its part done here, never a
wrong or missing folder or key; small roots never fork."""

from __future__ import annotations

import os
import sys

import pytest

from diagnose import pipeline
from diagnose.cache import RunCache
from diagnose.readers import discover
from diagnose.readers.keys import DEFAULT_KEYS, KeyMap

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="folders are found in a forked process on Linux only")


@pytest.fixture
def root(tmp_path, make_run):
    root = tmp_path / "logs"
    for index in range(12):  # studies of several sizes, some nested, some runs beside studies
        study = root / f"s{index % 5}" / ("deep" if index % 3 == 0 else "")
        make_run(study / f"r{index}", status="finished")
    make_run(root / "r_top", status="finished")
    (root / "s1" / "r1" / "extra").mkdir()
    (root / "s1" / "r1" / "extra" / "state.json").write_text("{}")  # a subfolder's file is part of a key too
    (root / "s2" / "notes.txt").write_text("not a run")
    (root / "csv").mkdir()
    (root / "csv" / "log.csv").write_text("iteration,objective\n1,2.0\n2,1.5\n")
    (root / "empty").mkdir()
    make_run(root / ".hidden" / "r", status="finished")
    make_run(root / "s4" / ".hidden", status="finished")
    (root / "link").symlink_to(root / "s0", target_is_directory=True)
    (root / "s3" / "link").symlink_to(root / "s1", target_is_directory=True)
    return root


def found(tmp_path, root, jobs, keys=DEFAULT_KEYS, cache_type=RunCache):
    folders, run_keys = pipeline._folders_and_keys(root, cache_type(tmp_path / "cache"), None, keys, jobs)
    assert len(folders) == len(run_keys) and all(run_keys)
    return folders, run_keys


@pytest.fixture
def forked(monkeypatch):
    """Forks from two runs and at any frontier; the number of folders each child sent back."""
    monkeypatch.setattr(pipeline, "FORKED_KEYS_MIN", 2)
    sent = []
    fork = pipeline._forked

    def counted(work):
        wait = fork(work)

        def result():
            texts = wait()
            sent.append(None if texts is None else len(texts) // 3)
            return texts

        return result

    monkeypatch.setattr(pipeline, "_forked", counted)
    return sent


@pytest.mark.parametrize("frontier", [2, 3, 5, 8, 100])
@pytest.mark.parametrize("keys", [DEFAULT_KEYS, KeyMap(step="iteration", loss="objective")])
def test_folders_and_keys_found_in_two_processes_are_those_found_in_one(tmp_path, root, forked, monkeypatch,
                                                                         frontier, keys):
    alone = found(tmp_path, root, jobs=1, keys=keys)
    assert [(folder, reader.__name__) for folder, reader in discover(root, keys)] == alone[0]
    assert len(set(alone[1])) == len(alone[1]) == (13 if keys == DEFAULT_KEYS else 14)
    monkeypatch.setattr(pipeline, "FORKED_FRONTIER", frontier)
    assert found(tmp_path, root, jobs=2, keys=keys) == alone
    assert len(forked) == 1 and 0 < forked[0] < len(alone[0])  # the child found some, not all


def test_a_failed_child_costs_its_part_done_here(tmp_path, root, forked, monkeypatch):
    alone = found(tmp_path, root, jobs=1)
    parent = os.getpid()

    class FailsInChild(RunCache):
        def key(self, *args):
            if os.getpid() != parent:
                raise OSError("a child that fails")
            return super().key(*args)

    assert found(tmp_path, root, jobs=2, cache_type=FailsInChild) == alone
    assert forked == [None]
    monkeypatch.setattr(pipeline, "_forked", lambda work: lambda: None)  # no fork at all
    assert found(tmp_path, root, jobs=2) == alone


def test_a_failure_here_waits_for_the_child(tmp_path, root, forked):
    parent = os.getpid()
    calls = []

    class FailsHere(RunCache):
        def key(self, *args):
            calls.append(None)
            if os.getpid() == parent and len(calls) > 2:
                raise OSError("this process fails")
            return super().key(*args)

    with pytest.raises(OSError, match="this process fails"):
        found(tmp_path, root, jobs=2, cache_type=FailsHere)
    assert len(forked) == 1 and forked[0]  # waited for, not left behind


def test_small_roots_never_fork(tmp_path, make_run, monkeypatch):
    monkeypatch.setattr(pipeline, "_forked", lambda work: pytest.fail("forked"))
    wide, deep = tmp_path / "wide", tmp_path / "deep"
    for index in range(100):
        make_run(wide / f"s{index:03d}" / "r", status="finished")
        make_run(deep / f"s{index // 10}" / f"r{index}", status="finished")
    for root in (wide, deep):
        assert len(found(tmp_path, root, jobs=2)[0]) == 100
