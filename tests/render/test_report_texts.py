"""A study's texts (facts, lrs, command, its runs' rows) are kept by its digest for the next report (html._StudyTexts)."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from diagnose import files
from diagnose.render import html


def with_digests(analysis, **changed):
    digests = {study.name: f"digest-{study.name}" for study in analysis.studies}
    return dataclasses.replace(analysis, study_digests={**digests, **changed})


@pytest.fixture
def made(monkeypatch) -> list[str]:
    """The studies whose runs' rows were made (not read from the cache folder), and whose facts and command were."""
    studies: list[str] = []
    rows, facts, command = html._run_rows, html._facts, html._command

    def counting_rows(runs):
        studies.extend(dict.fromkeys(r["study"] for r in runs))
        return rows(runs)

    def counting_facts(summary, study):
        studies.append(f"facts of {study.name}")
        return facts(summary, study)

    def counting_command(study):
        studies.append(f"command of {study.name}")
        return command(study)

    monkeypatch.setattr(html, "_run_rows", counting_rows)
    monkeypatch.setattr(html, "_facts", counting_facts)
    monkeypatch.setattr(html, "_command", counting_command)
    return studies


def all_made(analysis) -> list[str]:
    return sorted(f"{what}{study.name}" for study in analysis.studies for what in ("", "facts of ", "command of "))


def rows_file(folder):
    [path] = (folder / "texts").iterdir()
    return path


def test_a_second_report_with_the_same_digests_reads_the_rows(analysis, page, made, tmp_path):
    cached = with_digests(analysis)
    assert html.render(cached, cache_dir=tmp_path, jobs=1) == page
    assert sorted(made) == all_made(analysis)
    written = rows_file(tmp_path).stat().st_mtime_ns
    made.clear()
    assert html.render(cached, cache_dir=tmp_path, jobs=1) == page
    assert made == [] and rows_file(tmp_path).stat().st_mtime_ns == written  # read, not written again


def test_no_digests_or_no_folder_no_rows_kept(analysis, page, tmp_path):
    assert html.render(analysis, cache_dir=tmp_path, jobs=1) == page
    assert html.render(with_digests(analysis), jobs=1) == page
    assert not (tmp_path / "texts").exists()


def test_a_changed_run_is_shown_as_it_is_now(analysis, page, made, tmp_path):
    html.render(with_digests(analysis), cache_dir=tmp_path, jobs=1)
    runs = [dict(r) for r in analysis.document.runs]
    changed = next(r for r in runs if r["study"] == "sweep")
    changed["config"] = {**changed["config"], "note": "<changed>"}
    now = dataclasses.replace(analysis, document=dataclasses.replace(analysis.document, runs=runs))
    made.clear()
    again = html.render(with_digests(now, sweep="changed"), cache_dir=tmp_path, jobs=1)
    assert sorted(made) == ["command of sweep", "facts of sweep", "sweep"] and "note: &lt;changed&gt;" in again
    assert again.replace(", note: &lt;changed&gt;", "") == page


def test_the_rows_of_a_study_gone_go_and_a_damaged_file_is_made_again(analysis, page, made, tmp_path):
    cached = with_digests(analysis)
    html.render(cached, cache_dir=tmp_path, jobs=1)
    whole = rows_file(tmp_path).read_bytes()
    without = dataclasses.replace(cached, studies=[s for s in analysis.studies if s.name != "sweep"])
    runs = [r for r in analysis.document.runs if r["study"] != "sweep"]
    without = dataclasses.replace(without, document=dataclasses.replace(analysis.document, runs=runs))
    html.render(without, cache_dir=tmp_path, jobs=1)
    assert len(rows_file(tmp_path).read_bytes()) < len(whole)
    flipped = whole[:-10] + bytes([whole[-10] ^ 1]) + whole[-9:]
    # a letter of a kept fact changed: still JSON of the right shape, but not the fact
    _, head, _ = whole.split(b"\n", 2)
    fact = json.loads(head)["studies"][0][2][0].encode()
    at = whole.index(fact) + re.search(rb"[a-z]", fact).start()
    fact_changed = whole[:at] + bytes([whole[at] ^ 0x20]) + whole[at + 1:]
    for damage in (whole[:-10], flipped, fact_changed, whole.replace(b'"version": "', b'"version": "0'), b"\x00\xff",
                   b""):
        rows_file(tmp_path).write_bytes(damage)
        made.clear()
        assert html.render(cached, cache_dir=tmp_path, jobs=1) == page
        assert sorted(made) == all_made(analysis) and rows_file(tmp_path).read_bytes() == whole


def test_kept_texts_of_the_wrong_shape_are_made_again(analysis, page, made, tmp_path):
    cached = with_digests(analysis)
    html.render(cached, cache_dir=tmp_path, jobs=1)
    whole = rows_file(tmp_path).read_bytes()
    _, head, body = whole.split(b"\n", 2)
    for field, wrong in ((2, "a fact"), (2, [1]), (4, None), (6, -1)):
        held = json.loads(head)
        held["studies"][0][field] = wrong
        rest = json.dumps(held).encode() + b"\n" + body
        rows_file(tmp_path).write_bytes(b"".join(files.sealed([rest])))  # checksummed: only its shape is wrong
        made.clear()
        assert html.render(cached, cache_dir=tmp_path, jobs=1) == page
        assert sorted(made) == all_made(analysis) and rows_file(tmp_path).read_bytes() == whole
