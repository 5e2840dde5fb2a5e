"""Figures drawn in worker processes are the ones drawn here; a re-run reuses the figures it may reuse."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
import types

import jinja2
import pytest

from diagnose.render import drawing, html


@pytest.fixture
def draws(monkeypatch) -> list[drawing.Spec]:
    """The specs drawn in this process (a worker's draws are counted in the worker, not here)."""
    drawn: list[drawing.Spec] = []
    original = drawing.Inputs.draw

    def counting(self, spec):
        drawn.append(spec)
        return original(self, spec)

    monkeypatch.setattr(drawing.Inputs, "draw", counting)
    return drawn


def with_digests(analysis, **changed):
    digests = {study.name: f"digest-{study.name}" for study in analysis.studies}
    return dataclasses.replace(analysis, study_digests={**digests, **changed})


def test_figures_drawn_by_workers_are_byte_identical(analysis, page, draws, monkeypatch):
    assert html.render(analysis, jobs=1) == page
    alone = len(draws)
    monkeypatch.setattr(drawing, "PARALLEL_MIN_WORK", 0)
    parallel = html.render(analysis, jobs=2)
    assert 0 < len(draws) - alone < alone, "this process drew a share, the worker the rest"
    assert parallel == page  # the session's page, drawn in one process


def test_a_studys_figures_stay_in_one_process_while_the_shares_stay_even(analysis, monkeypatch):
    """They read the same runs: split between processes, both would read those tables."""
    monkeypatch.setattr(drawing, "PARALLEL_MIN_WORK", 0)
    painter = drawing.Painter(analysis, jobs=2)
    cost = {"sweep_curves": 10, "gap_curve": 3, "grad_norms": 3, "hyper_axis": 1, "finding_zoom": 1}
    painter.inputs = types.SimpleNamespace(work=lambda spec: cost[spec.kind])
    specs = [drawing.Spec("sweep_curves", study) for study in "abcd"] + [
        drawing.Spec(kind, study) for kind in ("gap_curve", "grad_norms", "hyper_axis") for study in "dcba"]
    shares = painter._shares(specs)
    assert sorted(sum(shares, [])) == list(range(len(specs)))
    assert [sorted({specs[i].study for i in share}) for share in shares] == [["a", "c"], ["b", "d"]]
    later = [drawing.Spec("finding_zoom", study) for study in "dcba"]  # the findings' plots, drawn next
    assert [sorted({later[i].study for i in share}) for share in painter._shares(later)] == [["a", "c"], ["b", "d"]]


def test_a_second_report_with_the_same_digests_draws_nothing(analysis, page, draws, tmp_path):
    cached = with_digests(analysis)
    first = html.render(cached, cache_dir=tmp_path, jobs=1)
    count = len(draws)
    files = [json.loads(path.read_text()) for path in tmp_path.glob("*.json")]
    assert count >= 10 and len(files) == len({spec.study for spec in draws}) and sum(map(len, files)) == count
    second = html.render(cached, cache_dir=tmp_path, jobs=1)
    assert len(draws) == count, draws[count:]
    assert first == second == page


def test_no_digests_no_cache(analysis, page, draws, tmp_path):
    assert html.render(analysis, cache_dir=tmp_path, jobs=1) == page
    assert html.render(analysis, cache_dir=tmp_path, jobs=1) == page
    assert not list(tmp_path.glob("*.json")) and len({d.study for d in draws}) == 3


def test_a_changed_digest_redraws_that_study_only(analysis, page, draws, tmp_path):
    html.render(with_digests(analysis), cache_dir=tmp_path, jobs=1)
    before = len(draws)
    again = html.render(with_digests(analysis, sweep="changed"), cache_dir=tmp_path, jobs=1)
    redrawn = draws[before:]
    assert redrawn and {spec.study for spec in redrawn} == {"sweep"}
    assert len(redrawn) == sum(spec.study == "sweep" for spec in draws[:before])
    assert again == page


def test_a_changed_finding_redraws_its_plot(analysis, draws, tmp_path):
    html.render(with_digests(analysis), cache_dir=tmp_path, jobs=1)
    before = len(draws)
    findings = list(analysis.document.findings)
    overfit = next(i for i, f in enumerate(findings) if f.check == "overfitting")
    findings[overfit] = dataclasses.replace(findings[overfit], evidence={**findings[overfit].evidence, "onset_step": 3})
    changed = dataclasses.replace(analysis, document=dataclasses.replace(analysis.document, findings=findings))
    html.render(with_digests(changed), cache_dir=tmp_path, jobs=1)
    assert [(spec.kind, spec.finding) for spec in draws[before:]] == [("gap_curve", overfit)]


def test_damaged_entries_are_drawn_again_and_replaced(analysis, page, draws, tmp_path):
    cached = with_digests(analysis)
    html.render(cached, cache_dir=tmp_path, jobs=1)
    paths = sorted(tmp_path.glob("*.json"), key=lambda path: -len(json.loads(path.read_text())))
    files = [json.loads(path.read_text()) for path in paths]
    # damaged entries of one study's file, and a file cut short: all of its entries are drawn again
    entries = [slot for slot, entry in files[0].items() if entry["plot"] is not None][:4]
    assert len(entries) == 4 and len(files) >= 2
    damaged = json.loads(paths[0].read_text())
    damaged[entries[0]] = "\x00\xff not an entry"
    damaged[entries[1]]["plot"] = {"title": "x"}
    plot = damaged[entries[2]]["plot"]
    plot["uri"] = plot["uri"][:-40] + "!"
    damaged[entries[3]]["plot"]["width"] = "wide"
    paths[0].write_text(json.dumps(damaged))
    paths[1].write_text(json.dumps(files[1])[:100])
    before = len(draws)
    assert html.render(cached, cache_dir=tmp_path, jobs=1) == page
    assert len(draws) - before == 4 + len(files[1])
    assert [json.loads(path.read_text()) for path in paths[:2]] == files[:2]


def test_a_changed_letter_of_a_kept_figure_is_caught_and_drawn_again(analysis, page, draws, tmp_path):
    cached = with_digests(analysis)
    html.render(cached, cache_dir=tmp_path, jobs=1)
    path = max(tmp_path.glob("*.json"), key=lambda path: len(path.read_bytes()))
    kept = json.loads(path.read_text())
    slot = next(slot for slot, entry in kept.items() if entry["plot"] is not None)
    uri = kept[slot]["plot"]["uri"]
    middle = len(uri) // 2
    # still base64, still an SVG's first and last bytes: only the checksum tells
    kept[slot]["plot"]["uri"] = uri[:middle] + ("A" if uri[middle] != "A" else "B") + uri[middle + 1:]
    path.write_text(json.dumps(kept))
    before = len(draws)
    assert html.render(cached, cache_dir=tmp_path, jobs=1) == page
    assert len(draws) - before == 1
    assert json.loads(path.read_text())[slot]["plot"]["uri"] == uri


def test_a_cache_that_cannot_be_written_never_fails_the_report(analysis, page, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    assert html.render(with_digests(analysis), cache_dir=blocked, jobs=1) == page
    assert html.render(with_digests(analysis), cache_dir=blocked / "below", jobs=1) == page


def test_the_compiled_template_is_kept_and_a_damaged_one_compiled_again(analysis, page, tmp_path, monkeypatch):
    html._environment.cache_clear()  # a new process: the template is loaded again
    assert html.render(analysis, cache_dir=tmp_path, jobs=1) == page
    [entry] = (tmp_path / "templates").iterdir()

    def no_compiling(*args, **kwargs):
        raise AssertionError("the template was compiled again")

    html._environment.cache_clear()
    with monkeypatch.context() as patched:
        patched.setattr(jinja2.Environment, "compile", no_compiling)
        assert html.render(analysis, cache_dir=tmp_path, jobs=1) == page
    for damage in (entry.read_bytes()[:40], b"\x00\xff not a template"):
        entry.write_bytes(damage)
        html._environment.cache_clear()
        assert html.render(analysis, cache_dir=tmp_path, jobs=1) == page
    html._environment.cache_clear()


def test_a_small_report_is_drawn_in_this_process(analysis, draws, monkeypatch):
    def no_pool(*args, **kwargs):
        raise AssertionError("a worker pool was started for a small report")

    monkeypatch.setattr(drawing, "ProcessPoolExecutor", no_pool)
    overfit = [study for study in analysis.studies if study.name == "overfit"]
    page = html.render(dataclasses.replace(analysis, studies=overfit), jobs=2)
    assert draws and "could not be drawn" not in page


def test_laying_out_a_page_imports_no_drawing_library():
    # A report whose figures all come from the cache loads none of the drawing code.
    script = ("import sys\nimport diagnose.cli, diagnose.render.html, diagnose.render.markdown\n"
              "print(sorted(m for m in ('matplotlib', 'PIL', 'diagnose.render.figures', 'diagnose.render.svg')"
              " if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_a_staging_file_a_killed_report_left_goes_once_an_hour_old(analysis, page, tmp_path):
    cached = with_digests(analysis)
    html.render(cached, cache_dir=tmp_path, jobs=1)
    staging = tmp_path / "staging"
    staging.mkdir(exist_ok=True)
    left, writing = staging / ".tmp-left", staging / ".tmp-being-written"
    for path in (left, writing):
        path.write_text('{"cut sh')
    hours_ago = time.time() - 2 * 3600
    os.utime(left, (hours_ago, hours_ago))
    assert html.render(cached, cache_dir=tmp_path, jobs=1) == page
    assert not left.exists() and writing.exists()  # the other may be another report's, still writing


def test_files_of_older_layouts_go_once(analysis, page, draws, tmp_path, monkeypatch):
    figure = {"key": "0" * 40, "plot": None}
    old = {"a" * 40 + ".json": figure, "b" * 40 + ".json": {"c" * 40: figure}, "d" * 40 + ".4242.tmp": figure}
    others = {"notes.txt": "not ours", "e" * 40 + ".json.bak": "not ours either"}
    for name, content in {**old, **others}.items():
        (tmp_path / name).write_text(json.dumps(content))
    cached = with_digests(analysis)
    with monkeypatch.context() as patched:
        patched.setattr(drawing, "_TIDY_SECONDS", -1, raising=False)  # out of time: left to the next report
        assert html.render(cached, cache_dir=tmp_path, jobs=1) == page
    assert all((tmp_path / name).exists() for name in old)
    count = len(draws)
    assert html.render(cached, cache_dir=tmp_path, jobs=1) == page
    assert len(draws) == count
    assert not any((tmp_path / name).exists() for name in old)
    assert all((tmp_path / name).exists() for name in others) and (tmp_path / "templates").is_dir()
    # once: the marker says the folder is of this layout, and a report does not look for them again
    (tmp_path / ("f" * 40 + ".json")).write_text("{}")
    html.render(cached, cache_dir=tmp_path, jobs=1)
    assert (tmp_path / ("f" * 40 + ".json")).exists()


def test_same_named_studies_of_two_roots_keep_their_own_figures(analysis, page, draws, tmp_path):
    """Their digests differ (their runs' keys do): in one file each would replace the other's figures."""
    (tmp_path / "another root").mkdir()  # a root that exists: one that does not loses its figures at any report
    here = with_digests(analysis)
    elsewhere = dataclasses.replace(
        analysis, document=dataclasses.replace(analysis.document, root=str(tmp_path / "another root")),
        study_digests={name: f"elsewhere-{digest}" for name, digest in here.study_digests.items()})
    assert html.render(here, cache_dir=tmp_path, jobs=1) == page
    html.render(elsewhere, cache_dir=tmp_path, jobs=1)
    count = len(draws)
    for _ in range(2):
        assert html.render(here, cache_dir=tmp_path, jobs=1) == page
        html.render(elsewhere, cache_dir=tmp_path, jobs=1)
    assert len(draws) == count, draws[count:]


def test_the_figures_of_a_study_gone_from_its_root_go(analysis, page, tmp_path):
    cached = with_digests(analysis)
    html.render(cached, cache_dir=tmp_path, jobs=1)
    files = set(tmp_path.glob("*.json"))
    gone = drawing.Painter(cached, tmp_path)._path("sweep")
    assert gone in files and len(files) == 3
    without = dataclasses.replace(cached, studies=[study for study in analysis.studies if study.name != "sweep"])
    html.render(without, cache_dir=tmp_path, jobs=1)
    assert set(tmp_path.glob("*.json")) == files - {gone}
    # a damaged record of the root's studies: replaced, and no file is removed for it
    [record] = (tmp_path / "roots").iterdir()
    for damage in ('["overfit", ["not a name"], 7, "../../elsewhere"]', "\x00\xff not a record"):
        record.write_text(damage)
        html.render(without, cache_dir=tmp_path, jobs=1)
        assert set(tmp_path.glob("*.json")) == files - {gone}
    assert html.render(cached, cache_dir=tmp_path, jobs=1) == page


def test_a_studys_file_keeps_only_the_figures_its_last_report_asked_for(analysis, tmp_path):
    """A figure no longer shown (a finding's plot at steps since changed) does not stay in the file forever."""
    html.render(with_digests(analysis), cache_dir=tmp_path, jobs=1)
    path = drawing.Painter(with_digests(analysis), tmp_path)._path("sweep")
    held = json.loads(path.read_text())
    path.write_text(json.dumps({**held, "0" * 40: next(iter(held.values()))}))
    html.render(with_digests(analysis, sweep="changed"), cache_dir=tmp_path, jobs=1)
    assert json.loads(path.read_text()).keys() == held.keys()
