"""A root's record (``RunCache.forget_absent`` / ``record``) serves a warm command's runs without opening their
entries, only for a run's exact key and check settings; a damaged record, a changed or deleted run, or another
process's record are misses, never a wrong run."""

from __future__ import annotations

import json
import os
import shutil
import zlib
from pathlib import Path

import pytest

from diagnose import cache as cache_module
from diagnose import pipeline
from diagnose.cache import RunCache
from diagnose.checks import CHECKS
from diagnose.pipeline import analyze_root
from comparable import document

REPO = Path(__file__).resolve().parent.parent
TUNED = tuple(c.configured({"start_factor": "100"}) if c.id == "divergence" else c for c in CHECKS)


@pytest.fixture
def logs(tmp_path) -> Path:
    shutil.copytree(REPO / "samples", tmp_path / "logs", ignore=shutil.ignore_patterns("*.py", "*.md"))
    return tmp_path / "logs"


@pytest.fixture
def opened(monkeypatch) -> list[str]:
    """The entries whose JSON is read (not served by the record), and the runs read from their files."""
    seen = []
    meta_text, read_run = cache_module._meta_text, pipeline.read_run

    def counted(entry, *args):
        seen.append(entry)
        return meta_text(entry, *args)

    def read(root, folder, *args):
        seen.append(str(folder))
        return read_run(root, folder, *args)

    monkeypatch.setattr(cache_module, "_meta_text", counted)
    monkeypatch.setattr(pipeline, "read_run", read)
    return seen


def record_of(cache: Path) -> Path:
    (record,) = (cache / "roots").iterdir()
    return record


def runs_of(logs: Path) -> list[Path]:
    return sorted(path.parent for path in logs.rglob("steps.csv"))


def test_a_warm_command_opens_no_entry_and_finds_the_same(logs, tmp_path, opened):
    broken = logs / "broken" / "run"
    broken.mkdir(parents=True)
    (broken / "run.json").write_text("{not json")  # unreadable: never an entry, never a line's JSON
    cold = document(analyze_root(logs, jobs=1, cache=RunCache(tmp_path / "cache")))
    record = record_of(tmp_path / "cache")
    written = record.stat()
    opened.clear()
    warm = analyze_root(logs, jobs=1, cache=RunCache(tmp_path / "cache"))
    assert [path for path in opened if not path.endswith(".run")] == [str(broken)]
    assert len(set(opened)) == 2 and document(warm) == cold  # and its entry, asked for
    assert (record.stat().st_ino, record.stat().st_mtime_ns) == (written.st_ino, written.st_mtime_ns)  # unchanged
    # the tables still come from the entries, on first use
    assert all(run.steps.equals(fresh.steps) for run, fresh in
               zip([r for s in warm.studies for r in s.runs], [r for s in analyze_root(logs, jobs=1).studies
                                                                for r in s.runs]))


def test_a_record_serves_only_the_key_and_check_settings_it_was_written_for(logs, tmp_path, opened, monkeypatch):
    analyze_root(logs, jobs=1, cache=RunCache(tmp_path / "cache"))
    opened.clear()
    tuned = analyze_root(logs, TUNED, jobs=1, cache=RunCache(tmp_path / "cache"))
    # other settings: their findings are beside the entries
    assert all(path.endswith(".run") for path in opened) and len(set(opened)) == len(runs_of(logs))
    assert document(tuned) == document(analyze_root(logs, TUNED, jobs=1))
    opened.clear()
    # another version of the code: every key is another, the record's lines are not this version's runs
    monkeypatch.setattr(cache_module, "code_version", lambda: "edited")
    analyze_root(logs, jobs=1, cache=RunCache(tmp_path / "cache"))
    assert sorted(path for path in opened if not path.endswith(".run")) == [str(run) for run in runs_of(logs)]


def test_a_changed_or_deleted_run_is_not_served_from_the_record(logs, tmp_path, opened):
    analyze_root(logs, jobs=1, cache=RunCache(tmp_path / "cache"))
    changed, deleted = runs_of(logs)[:2]
    steps = changed / "steps.csv"
    last = steps.read_text().splitlines()[-1].split(",")
    steps.write_text(steps.read_text() + ",".join([str(int(last[0]) + 1), *last[1:]]) + "\n")
    shutil.rmtree(deleted)
    opened.clear()
    warm = analyze_root(logs, jobs=1, cache=RunCache(tmp_path / "cache"))
    assert [path for path in opened if not path.endswith(".run")] == [str(changed)]
    assert document(warm) == document(analyze_root(logs, jobs=1))
    opened.clear()
    assert document(analyze_root(logs, jobs=1, cache=RunCache(tmp_path / "cache"))) == document(warm)
    assert opened == []  # the changed run's new version is in the record now


@pytest.mark.parametrize("damage", ["truncated", "a byte changed", "another layout", "a line's JSON"])
def test_a_damaged_record_is_ignored(logs, tmp_path, opened, damage):
    cold = document(analyze_root(logs, jobs=1, cache=RunCache(tmp_path / "cache")))
    record = record_of(tmp_path / "cache")
    data = record.read_bytes()
    header, body = data.split(b"\n", 1)
    if damage == "truncated":
        data = data[:len(data) // 2]
    elif damage == "a byte changed":
        data = data.replace(b'"status":"finished"', b'"status":"finishes"', 1)
    elif damage == "another layout":
        data = data.replace(cache_module._RECORD.encode(), b"dgnroot/0", 1)
    else:  # its checksum as written, but not JSON: never written so, a line of it is asked of the entry
        body = body.replace(b'{"name"', b'{"name', 1)
        owner = header.split(b" ", 2)[2]  # the root's JSON, as written
        data = f"{cache_module._RECORD} {zlib.crc32(body):08x} ".encode() + owner + b"\n" + body
    record.write_bytes(data)
    opened.clear()
    assert document(analyze_root(logs, jobs=1, cache=RunCache(tmp_path / "cache"))) == cold
    assert opened and all(path.endswith(".run") for path in opened)  # the entries, no run read again
    opened.clear()
    assert document(analyze_root(logs, jobs=1, cache=RunCache(tmp_path / "cache"))) == cold
    assert opened == []  # replaced by a whole record


def test_an_entry_gone_under_its_record_gives_the_tables_of_the_files_and_is_stored_again(logs, tmp_path, opened):
    analyze_root(logs, jobs=1, cache=RunCache(tmp_path / "cache"))
    for entry in (tmp_path / "cache").glob("*/*.run"):
        entry.write_bytes(b"x" * 100)  # damaged in place: the record still serves its run's JSON
    shutil.rmtree(tmp_path / "cache" / "studies")  # the study work reads the runs' tables
    fresh = analyze_root(logs, jobs=1)
    warm = analyze_root(logs, jobs=1, cache=RunCache(tmp_path / "cache"))
    assert document(warm) == document(fresh)
    assert all(run.steps.equals(other.steps) for run, other in
               zip([run for study in warm.studies for run in study.runs],
                   [run for study in fresh.studies for run in study.runs]))
    opened.clear()
    analyze_root(logs, jobs=1, cache=RunCache(tmp_path / "cache"))  # asks the entries, reads the runs again
    assert sorted(path for path in opened if not path.endswith(".run")) == [str(run) for run in runs_of(logs)]
    assert all(json.loads(cache_module._meta_text(str(entry))) for entry in (tmp_path / "cache").glob("*/*.run"))
    opened.clear()
    # stored again, they are the record's again (also in this process, which saw their entries damaged)
    assert document(analyze_root(logs, jobs=1, cache=RunCache(tmp_path / "cache"))) == document(fresh)
    assert opened == []


def test_two_commands_on_one_root_last_writer_wins_and_stale_lines_are_misses(logs, tmp_path, monkeypatch):
    analyze_root(logs, jobs=1, cache=RunCache(tmp_path / "cache"))
    steps = runs_of(logs)[0] / "steps.csv"
    before = steps.read_text()
    last = before.splitlines()[-1].split(",")
    steps.write_text(before + ",".join([str(int(last[0]) + 1), *last[1:]]) + "\n")
    changed_at = steps.stat().st_mtime_ns
    # A reads the changed run, but writes its record only after B, which saw the run changed back
    held = []
    monkeypatch.setattr(RunCache, "record", lambda self, keys: held.append((self, keys)))
    changed = analyze_root(logs, jobs=1, cache=RunCache(tmp_path / "cache"))
    monkeypatch.undo()
    steps.write_text(before)
    back = document(analyze_root(logs, jobs=1, cache=RunCache(tmp_path / "cache")))
    [(a, keys)] = held
    a.record(keys)  # the last record written: its line of the run is of the changed version, whose entry B replaced
    assert document(analyze_root(logs, jobs=1, cache=RunCache(tmp_path / "cache"))) == back
    assert back == document(analyze_root(logs, jobs=1)) != document(changed)
    # the changed version again, to the nanosecond: A's line serves its JSON, its tables come from its files
    steps.write_text(before + ",".join([str(int(last[0]) + 1), *last[1:]]) + "\n")
    os.utime(steps, ns=(changed_at, changed_at))
    again = analyze_root(logs, jobs=1, cache=RunCache(tmp_path / "cache"))
    assert document(again) == document(changed)
    assert again.studies[0].runs[0].steps.equals(changed.studies[0].runs[0].steps)
