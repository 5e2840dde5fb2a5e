"""``RunCache.load_many``: a warm command's runs from the root's record in one parse, the same runs as ``load`` gives;
their instability events made only when a study's work (``StudyCache.prepare``) or a store asks for them."""

from __future__ import annotations

import os
import shutil
import zlib
from pathlib import Path

import pytest

from diagnose import cache as cache_module
from diagnose import instability
from diagnose.analyze import assemble, group_studies, study_work
from diagnose.cache import RunCache, StudyCache, checks_key
from diagnose.checks import CHECKS, Scope
from diagnose.pipeline import analyze_root
from diagnose.readers import discover
from diagnose.readers.keys import DEFAULT_KEYS

REPO = Path(__file__).resolve().parent.parent
RUN_CHECKS = tuple(c for c in CHECKS if c.scope is Scope.RUN)


@pytest.fixture
def warm(tmp_path) -> tuple[Path, Path]:
    """A copy of samples/ and a cache that a command on it filled (entries and the root's record)."""
    logs = tmp_path / "logs"
    shutil.copytree(REPO / "samples", logs, ignore=shutil.ignore_patterns("*.py", "*.md"))
    analyze_root(logs, jobs=1, cache=RunCache(tmp_path / "cache"))
    return logs, tmp_path / "cache"


def opened_cache(logs: Path, directory: Path) -> tuple[RunCache, list[str], list[tuple]]:
    """A new command's cache on ``logs``, its record read: the cache, the runs' keys and their sources."""
    cache = RunCache(directory)
    root = os.path.realpath(logs)
    folders = [(folder, reader.__name__) for folder, reader in discover(logs, DEFAULT_KEYS)]
    keys = [cache.key(folder, reader_name, root) for folder, reader_name in folders]
    cache.forget_absent(root, keys)
    return cache, keys, [(logs, folder, reader_name, DEFAULT_KEYS) for folder, reader_name in folders]


def same_loads(many, one) -> None:
    """``load_many``'s runs as ``load``'s: fields, findings, skips, and (asked for) instability events."""
    assert len(many) == len(one)
    events = []
    for (run, findings, skipped), (expected, expected_findings, expected_skipped) in zip(many, one):
        assert {k: v for k, v in vars(run).items() if not k.startswith("_")} == \
            {k: v for k, v in vars(expected).items() if not k.startswith("_")}
        assert findings == expected_findings and skipped == expected_skipped
        cache_module.settle(run)
        assert instability.memoised(run) == instability.memoised(expected)
        events += instability.memoised(run).values()
    assert any(events)  # runs with events among them


@pytest.fixture
def opened(monkeypatch) -> list[str]:
    seen = []
    meta_text = cache_module._meta_text

    def counted(entry, *args):
        seen.append(entry)
        return meta_text(entry, *args)

    monkeypatch.setattr(cache_module, "_meta_text", counted)
    return seen


def test_load_many_gives_the_runs_load_gives_without_opening_an_entry(warm, opened):
    logs, directory = warm
    cache, keys, sources = opened_cache(logs, directory)
    many = cache.load_many(keys, checks_key(RUN_CHECKS), sources)
    assert opened == [] and all(many)
    cache, keys, sources = opened_cache(logs, directory)
    same_loads(many, [cache.load(key, checks_key(RUN_CHECKS), source) for key, source in zip(keys, sources)])


@pytest.mark.parametrize("damage", ["a line not JSON", "two lines one JSON", "a line a list"])
def test_a_record_line_not_as_written_costs_its_entry_a_look_never_a_wrong_run(warm, opened, damage):
    logs, directory = warm
    (record,) = (directory / "roots").iterdir()
    header, body = record.read_bytes().split(b"\n", 1)
    keys, texts = body.split(b"\n", 1)
    lines = texts.split(b"\n")
    if damage == "a line not JSON":
        lines[1] = lines[1].replace(b'{"name"', b'{"name', 1)
    elif damage == "two lines one JSON":  # each not JSON alone, but one object once joined by a comma
        lines[1], lines[2] = lines[1][:-1] + b',"x":[1', b'2]}'
    else:
        lines[1] = b"[" + lines[1] + b"]"
    body = keys + b"\n" + b"\n".join(lines)
    owner = header.split(b" ", 2)[2]  # the root's JSON, as written
    record.write_bytes(f"{cache_module._RECORD} {zlib.crc32(body):08x} ".encode() + owner + b"\n" + body)
    cache, keys, sources = opened_cache(logs, directory)
    many = cache.load_many(keys, checks_key(RUN_CHECKS), sources)
    damaged = 2 if damage == "two lines one JSON" else 1
    assert len(opened) == damaged and all(many)  # the damaged lines' entries, asked
    fresh, keys, sources = opened_cache(logs, directory)
    same_loads(many, [fresh.load(key, checks_key(RUN_CHECKS), source) for key, source in zip(keys, sources)])


def test_a_study_worked_on_again_gets_its_runs_events_from_their_entries(warm, monkeypatch):
    logs, directory = warm
    fresh = analyze_root(logs, jobs=1)
    shutil.rmtree(directory / "studies")  # every study's work is done again
    found = []
    monkeypatch.setattr(instability, "find_instability", lambda *args: found.append(args[2]) or [])
    searched = {}
    for many in (False, True):
        cache, keys, sources = opened_cache(logs, directory)
        if many:
            loaded = cache.load_many(keys, checks_key(RUN_CHECKS), sources)
            assert not any(instability.memoised(run) for run, _, _ in loaded)  # not made yet: no study asked
        else:
            loaded = [cache.load(key, checks_key(RUN_CHECKS), source) for key, source in zip(keys, sources)]
        runs = [run for run, _, _ in loaded]
        found.clear()
        studies = StudyCache(directory, dict(zip(map(id, runs), keys)), CHECKS)
        analysis = assemble(logs, loaded, [], CHECKS, studies,
                            lambda todo, checks: [study_work(study, checks) for study in todo])
        assert analysis.document.findings == fresh.document.findings
        searched[many] = list(found)
        shutil.rmtree(directory / "studies")
    # the events each run's entry held are not searched for again (those of other settings, or of a run the run
    # checks skip, are)
    assert searched[True] == searched[False] and len(searched[True]) < len(runs)


def test_damaged_events_kept_for_later_are_found_again_in_the_runs_tables(warm):
    logs, directory = warm
    fresh = {run.name: run for study in analyze_root(logs, jobs=1).studies for run in study.runs}
    cache, keys, sources = opened_cache(logs, directory)
    runs = [run for run, _, _ in cache.load_many(keys, checks_key(RUN_CHECKS), sources)]
    for run in runs:
        run.__dict__[cache_module._EVENTS] = {"[1,2]": [{"start_step": 3}]}
    studies = StudyCache(directory, dict(zip(map(id, runs), keys)), CHECKS)
    for study in group_studies(runs):
        studies.prepare(study)
    for run in runs:
        assert instability.memoised(run) == {}
        assert instability.run_instability(run) == instability.run_instability(fresh[run.name])


def test_a_store_of_a_run_from_load_many_keeps_its_events(warm):
    logs, directory = warm
    cache, keys, sources = opened_cache(logs, directory)
    loaded = cache.load_many(keys, checks_key(RUN_CHECKS), sources)
    for (run, findings, skipped), key, source in zip(loaded, keys, sources):
        assert cache.store(key, run, "0" * 16, findings, skipped)  # other settings: beside the entry
        stored, _, _ = RunCache(directory).load(key, "0" * 16, source)  # no record read: from the entry
        expected, _, _ = RunCache(directory).load(key, checks_key(RUN_CHECKS), source)
        assert instability.memoised(stored) == instability.memoised(expected)
    assert any(instability.memoised(run) for run, _, _ in loaded)


def test_a_warm_run_renamed_for_a_namesake_is_checked_again_without_searching_its_events(warm, monkeypatch):
    logs, directory = warm
    # a copied folder: two runs named alike in one study, named by their folders (readers.disambiguate)
    shutil.copytree(logs / "healthy" / "warmup-cosine-lr0.1", logs / "healthy" / "copy")
    fresh = analyze_root(logs, jobs=1)
    analyze_root(logs, jobs=1, cache=RunCache(directory))  # the copy's entry stored; the record names both
    searched = []
    run_loss = instability.run_loss
    monkeypatch.setattr(instability, "run_loss", lambda run: searched.append(run.name) or run_loss(run))
    warm_again = analyze_root(logs, jobs=1, cache=RunCache(directory))
    assert warm_again.document.findings == fresh.document.findings
    renamed = {"healthy/copy", "healthy/warmup-cosine-lr0.1"}
    assert renamed <= {run["name"] for run in warm_again.document.runs}
    assert not renamed & set(searched)  # checked again with the events of their entries
