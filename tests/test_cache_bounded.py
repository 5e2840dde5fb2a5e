"""The cache stays bounded on disk: one entry a run and one file a study, whatever the history of re-runs,
changed runs, check settings and code edits; files of older layouts and abandoned staging files removed;
two processes sharing it stay safe. On the samples' real runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diagnose import cache as cache_module
from diagnose.cache import RunCache
from diagnose.checks import CHECKS
from diagnose.checks.registry import Scope
from diagnose.files import ABANDONED
from diagnose.pipeline import analyze_root
from diagnose.readers.keys import KeyMap
from comparable import document

REPO = Path(__file__).resolve().parent.parent
TUNED = tuple(c.configured({"start_factor": "100"}) if c.id == "divergence" else c for c in CHECKS)


def files(cache: Path) -> set[str]:
    """Every file the cache holds, by its path in it."""
    return {path.relative_to(cache).as_posix() for path in cache.rglob("*") if path.is_file()}


def entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*/*.run"))


@pytest.fixture
def logs(tmp_path) -> Path:
    """A copy of the samples' runs, to change."""
    shutil.copytree(REPO / "samples", tmp_path / "logs", ignore=shutil.ignore_patterns("*.py", "*.md"))
    return tmp_path / "logs"


def runs_of(logs: Path) -> list[Path]:
    return sorted(path.parent for path in logs.rglob("steps.csv"))


def append_a_step(run: Path) -> None:
    steps = run / "steps.csv"
    last = steps.read_text().splitlines()[-1].split(",")
    steps.write_text(steps.read_text() + ",".join([str(int(last[0]) + 1), *last[1:]]) + "\n")


def test_a_run_appended_to_keeps_one_entry_and_the_findings_of_a_fresh_read(logs, tmp_path):
    cache = RunCache(tmp_path / "cache")
    analyze_root(logs, jobs=1, cache=cache)
    assert len(entries(tmp_path / "cache")) == len(runs_of(logs))
    for run in runs_of(logs)[:3]:
        append_a_step(run)
    again = analyze_root(logs, jobs=1, cache=cache)
    assert len(entries(tmp_path / "cache")) == len(runs_of(logs))
    assert document(again) == document(analyze_root(logs, jobs=1))


def test_the_cache_holds_what_a_fresh_one_would_whatever_its_history(logs, tmp_path):
    """Re-runs, changed runs, other check settings and a code edit leave the files a fresh cache would have:
    no older version's entry, study file or other settings' findings stays beside the current ones."""
    cache = RunCache(tmp_path / "cache")
    for checks in (CHECKS, TUNED):
        analyze_root(logs, checks, jobs=1, cache=cache)
    for run in runs_of(logs)[::4]:
        append_a_step(run)
    edited = cache_module.code_version() + "-edited"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cache_module, "code_version", lambda: edited)
        for checks in (CHECKS, TUNED, CHECKS):
            analyze_root(logs, checks, jobs=1, cache=cache)
        fresh = RunCache(tmp_path / "fresh")
        for checks in (CHECKS, TUNED):
            studied = analyze_root(logs, checks, jobs=1, cache=fresh).study_digests
    assert files(tmp_path / "cache") == files(tmp_path / "fresh")
    held = files(tmp_path / "cache")
    assert len(entries(tmp_path / "cache")) == len(runs_of(logs))
    assert len([name for name in held if name.startswith("studies/")]) == len(studied)


def test_the_entries_of_runs_deleted_from_the_root_go_at_the_next_command(logs, tmp_path):
    cache = RunCache(tmp_path / "cache")
    analyze_root(logs, jobs=1, cache=cache)
    deleted = runs_of(logs)[:2]
    for run in deleted:
        shutil.rmtree(run)
    again = analyze_root(logs, jobs=1, cache=cache)
    assert len(entries(tmp_path / "cache")) == len(runs_of(logs))
    assert document(again) == document(analyze_root(logs, jobs=1))
    # another command's key names read other entries: neither removes the other's
    analyze_root(logs, jobs=1, cache=cache, keys=KeyMap(loss="loss"))
    analyze_root(logs, jobs=1, cache=cache)
    assert len(entries(tmp_path / "cache")) == 2 * len(runs_of(logs))


def test_a_code_edit_replaces_every_entry_in_place(logs, tmp_path, monkeypatch):
    cache = RunCache(tmp_path / "cache")
    cold = analyze_root(logs, jobs=1, cache=cache)
    before = files(tmp_path / "cache")
    monkeypatch.setattr(cache_module, "code_version", lambda: "edited")
    edited = analyze_root(logs, jobs=1, cache=cache)
    assert files(tmp_path / "cache") == before
    assert document(edited) == document(cold)
    assert set(edited.study_digests.values()).isdisjoint(cold.study_digests.values())


def test_a_new_version_of_a_run_drops_what_other_settings_found_in_the_old_one(logs, tmp_path):
    cache = RunCache(tmp_path / "cache")
    analyze_root(logs, jobs=1, cache=cache)
    analyze_root(logs, TUNED, jobs=1, cache=cache)
    assert len(list((tmp_path / "cache").glob("*/*.run.checks/*.json"))) == len(runs_of(logs))
    append_a_step(runs_of(logs)[0])
    analyze_root(logs, jobs=1, cache=cache)  # its new version stored: what the tuned checks found in the old gone
    assert len(list((tmp_path / "cache").glob("*/*.run.checks/*.json"))) == len(runs_of(logs)) - 1
    assert document(analyze_root(logs, TUNED, jobs=1, cache=cache)) == document(analyze_root(logs, TUNED, jobs=1))


def test_an_entry_of_another_version_is_a_miss_and_never_served(logs, tmp_path):
    cache = RunCache(tmp_path / "cache")
    analyze_root(logs, jobs=1, cache=cache)
    [run, *_] = runs_of(logs)
    key = cache.key(run, "diagnose.readers.rundir", os.path.realpath(logs))
    source = (logs, run, "diagnose.readers.rundir", None)
    checks_key = cache_module.checks_key(tuple(c for c in CHECKS if c.scope is Scope.RUN))
    assert cache.load(key, checks_key, source) is not None
    append_a_step(run)
    changed = cache.key(run, "diagnose.readers.rundir", os.path.realpath(logs))
    assert cache._entry(changed) == cache._entry(key)  # the same run: one entry
    assert cache.load(changed, checks_key, source) is None
    assert Path(cache._entry(key)).exists()  # left for the store that follows to replace


def test_files_of_older_layouts_are_removed_once_and_files_not_the_caches_kept(logs, tmp_path):
    directory = tmp_path / "cache"
    old = [
        "ab/" + "1" * 64 + ".run",  # one file a run (dgnrun/2)
        "ab/" + "1" * 64 + ".run.checks-" + "2" * 16 + ".json",
        "cd/" + "3" * 64 + "/meta.json",  # a folder a run
        "cd/" + "3" * 64 + "/steps.arrow",
        "cd/" + "3" * 64 + "/checks-" + "4" * 16 + ".json",
        "cd/.tmp-abandoned/steps.arrow",  # an older writer's staging folder
        "studies/ef/" + "5" * 64 + ".json",
    ]
    kept = ["ab/notes.txt", "figures/" + "6" * 40 + ".json", "ab/.tmp-0123456789abcdef"]
    for name in old + kept:
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text("x")
    hour_ago = time.time() - 2 * ABANDONED
    os.utime(directory / "cd" / ".tmp-abandoned", (hour_ago, hour_ago))
    os.utime(directory / "cd" / ".tmp-abandoned" / "steps.arrow", (hour_ago, hour_ago))
    with pytest.MonkeyPatch.context() as patch:  # a command out of time leaves the rest, and no marker
        patch.setattr(cache_module, "_TIDY_SECONDS", -1)
        analyze_root(logs, jobs=1, cache=RunCache(directory))
    assert set(old) <= files(directory) and not (directory / cache_module._MARKER).exists()
    cold = analyze_root(logs, jobs=1, cache=RunCache(directory))
    held = files(directory)
    assert not held & set(old)
    assert set(kept) <= held  # another's file, a figure, a staging file being written now
    assert not (directory / "cd" / ("3" * 64)).exists() and not (directory / "cd" / ".tmp-abandoned").exists()
    assert document(cold) == document(analyze_root(logs, jobs=1))

    # the walk happens once: a warm run reads the marker, not every shard folder
    (directory / old[0]).write_text("x")
    analyze_root(logs, jobs=1, cache=RunCache(directory))
    assert (directory / old[0]).exists()
    (directory / cache_module._MARKER).write_text("diagnose cache 2\n")
    analyze_root(logs, jobs=1, cache=RunCache(directory))
    assert not (directory / old[0]).exists()


def test_staging_files_a_killed_process_left_are_removed_and_those_being_written_kept(logs, tmp_path):
    directory = tmp_path / "cache"
    analyze_root(logs, jobs=1, cache=RunCache(directory))
    staging = directory / cache_module._STAGING
    assert staging.is_dir() and not list(staging.iterdir())  # every file put in place
    (staging / ".tmp-left").write_bytes(b"half an entry")
    (staging / ".tmp-writing").write_bytes(b"half an entry")
    hours_ago = time.time() - 2 * ABANDONED
    os.utime(staging / ".tmp-left", (hours_ago, hours_ago))
    analyze_root(logs, jobs=1, cache=RunCache(directory))
    assert sorted(path.name for path in staging.iterdir()) == [".tmp-writing"]


def test_an_entry_removed_or_replaced_mid_load_is_a_miss_never_an_error(logs, tmp_path, monkeypatch):
    """What another process does meanwhile: store a new version (the entry replaced, side files removed)."""
    cache = RunCache(tmp_path / "cache")
    analyze_root(logs, jobs=1, cache=cache)
    cold = analyze_root(logs, TUNED, jobs=1, cache=cache)  # the tuned findings beside each entry
    assert len(list((tmp_path / "cache").glob("*/*.run.checks/*.json"))) == len(runs_of(logs))
    meta_text = cache_module._meta_text

    def removed_meanwhile(entry, *args):
        meta = meta_text(entry, *args)
        cache_module._clear(f"{entry}.checks")
        os.unlink(entry)
        return meta

    monkeypatch.setattr(cache_module, "_meta_text", removed_meanwhile)
    warm = analyze_root(logs, TUNED, jobs=1, cache=cache)
    assert document(warm) == document(cold)
    for name in ("steps", "evals"):  # its tables read from the run's files again
        assert all(getattr(run, name).equals(getattr(cold.run(run.study, run.name), name))
                   for study in warm.studies for run in study.runs)


def test_tables_of_a_run_whose_entry_became_another_version_come_from_its_files(logs, tmp_path):
    cache = RunCache(tmp_path / "cache")
    cold = analyze_root(logs, jobs=1, cache=cache)
    warm = analyze_root(logs, jobs=1, cache=cache)
    run = warm.studies[0].runs[0]
    assert "steps" not in run.__dict__
    # another process stores another version of the run (its code edited): other tables under the same name
    _, source = run._load_table.args
    other = cold.studies[1].runs[0]
    key = cache.key(source[1], source[2], os.path.realpath(logs))
    assert cache.store(key.rsplit(".", 1)[0] + "." + "f" * 32, other, "checks", [], [])
    assert run.steps.equals(cold.run(run.study, run.name).steps)
    assert run.evals.equals(cold.run(run.study, run.name).evals)


def test_findings_are_identical_cold_warm_and_without_a_cache(logs, tmp_path):
    cache = RunCache(tmp_path / "cache")
    cold = document(analyze_root(logs, jobs=1, cache=cache))
    assert cold == document(analyze_root(logs, jobs=1, cache=cache)) == document(analyze_root(logs, jobs=1))


def test_two_processes_sharing_the_cache_while_runs_change_write_what_one_would(logs, tmp_path):
    env = {**os.environ, "DIAGNOSE_CACHE_DIR": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "diagnose.cli", "check", str(logs), "--json"]
    subprocess.run([*command, str(tmp_path / "first.json")], env=env, capture_output=True, check=False)
    for run in runs_of(logs)[::3]:
        append_a_step(run)
    both = [subprocess.Popen([*command, str(tmp_path / f"{i}.json")], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL) for i in range(2)]
    codes = [process.wait(timeout=120) for process in both]
    alone = subprocess.run([*command, str(tmp_path / "alone.json"), "--no-cache"], env=env, capture_output=True)
    assert codes == [alone.returncode] * 2

    def found(name):
        data = json.loads((tmp_path / name).read_text())
        del data["generated"]
        return data

    assert found("0.json") == found("1.json") == found("alone.json")
    assert len(entries(tmp_path / "cache")) == len(runs_of(logs))
    assert not list((tmp_path / "cache" / cache_module._STAGING).iterdir())
