"""A log root deleted whole is forgotten by the next command on another root: its runs' entries, its studies' files,
its figures, its page texts and its records go (``RunCache._forget_gone_roots``, ``drawing.forget_gone_roots``);
a root that exists, and whatever a damaged record names, stay."""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from diagnose import cache as cache_module
from diagnose.cli import main
from diagnose.render import drawing

HEALTHY = "step,loss,grad_norm\n" + "".join(f"{i},{1 / (1 + i / 20)!r},1.0\n" for i in range(100))
DIVERGED = "step,loss\n" + "".join(f"{i},{'nan' if i > 50 else 1.0}\n" for i in range(100))
# the cache folder's files that are no root's: layout markers, the page template's compiled code, files being written
SHARED = ("layout", "figures/layout", "figures/templates/", "staging/", "figures/staging/")


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DIAGNOSE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def roots(tmp_path, make_run) -> tuple[Path, Path]:
    """Two log roots of an lr sweep and a lone run each."""
    for name in ("a", "b"):
        for lr, steps in ((0.01, HEALTHY), (0.1, HEALTHY), (1.0, DIVERGED)):
            make_run(tmp_path / name / "sweep" / f"lr{lr}", steps=steps, config={"lr": lr})
        make_run(tmp_path / name / "alone" / "run", steps=HEALTHY, config={"lr": 0.1})
    return tmp_path / "a", tmp_path / "b"


def invoke(*args) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code in (0, 1), result.output
    return result.output


def report(root: Path, out: Path) -> tuple[dict, str]:
    """Report ``root``: its findings document and its page, without the time they were made."""
    invoke("report", root, "-o", out.with_suffix(".html"), "--json", out.with_suffix(".json"))
    document = json.loads(out.with_suffix(".json").read_text())
    page = out.with_suffix(".html").read_text().replace(document.pop("generated").replace("T", " ")[:19], "")
    return document, page


def held(cache_dir: Path) -> set[str]:
    """The cache folder's files (a ``.checks`` folder's too) but ``SHARED``, by their paths in it."""
    names = {path.relative_to(cache_dir).as_posix() for path in cache_dir.rglob("*") if path.is_file()}
    return {name for name in names if not name.startswith(SHARED)}


def kinds(names: set[str]) -> set[str]:
    """What the files ``names`` are: entries, their other settings' findings, records, studies, figures, texts."""
    found = set()
    for name in names:
        parts = name.split("/")
        if parts[0] == "figures":
            found.add({"roots": "figure record", "texts": "texts"}.get(parts[1], "figures"))
        else:
            found.add({"roots": "record", "studies": "study"}.get(parts[0], "checks" if ".checks/" in name else "run"))
    return found


ALL_KINDS = {"run", "checks", "record", "study", "figures", "figure record", "texts"}


def a_reported(roots, cache_dir, tmp_path) -> set[str]:
    """Report root a (and check it with other settings): the files it gave the cache."""
    a, _ = roots
    report(a, tmp_path / "a-report")
    invoke("check", a, "--set", "divergence.start_factor=100")  # findings beside its entries
    files = held(cache_dir)
    assert kinds(files) == ALL_KINDS
    return files


def test_a_root_deleted_whole_loses_its_files_at_a_command_on_another_root(roots, cache_dir, tmp_path):
    a, b = roots
    of_a = a_reported(roots, cache_dir, tmp_path)
    before = report(b, tmp_path / "b-before")
    of_b = held(cache_dir) - of_a
    assert kinds(of_b) == ALL_KINDS - {"checks"}
    invoke("check", b)  # a root that exists keeps its files
    assert held(cache_dir) == of_a | of_b
    shutil.rmtree(a)
    invoke("check", b)  # all of a's files go: its runs', studies', figures and page texts
    assert held(cache_dir) == of_b
    assert report(b, tmp_path / "b-after") == before
    assert held(cache_dir) == of_b


def test_a_root_deleted_whole_loses_its_figures_at_a_report_on_another_root(roots, cache_dir, tmp_path):
    a, b = roots
    of_a = a_reported(roots, cache_dir, tmp_path)
    before = report(b, tmp_path / "b-before")
    shutil.rmtree(a)
    assert report(b, tmp_path / "b-after") == before
    assert not held(cache_dir) & of_a  # the run cache's and the figure cache's


def test_out_of_time_the_rest_is_the_next_commands(roots, cache_dir, tmp_path, monkeypatch):
    a, b = roots
    of_a = a_reported(roots, cache_dir, tmp_path)
    report(b, tmp_path / "b")
    of_b = held(cache_dir) - of_a
    shutil.rmtree(a)
    with monkeypatch.context() as patched:
        patched.setattr(cache_module, "_TIDY_SECONDS", -1)
        patched.setattr(drawing, "_TIDY_SECONDS", -1)
        report(b, tmp_path / "b")
    assert held(cache_dir) == of_a | of_b
    report(b, tmp_path / "b")
    assert held(cache_dir) == of_b


def damaged_record(folder: Path, damage: str, b_keys: bytes = b"") -> None:
    """Damage the record in ``folder`` of root a (``b_keys``: the runs' keys of root b, in a run cache's record)."""
    (record,) = [path for path in folder.iterdir() if b'/a"' in path.read_bytes().split(b"\n")[0]]
    data = record.read_bytes()
    header, body = data.split(b"\n", 1)
    if damage == "its root changed":  # another root's name in the line: not this record's
        data = data.replace(b'/a"', b'/c"', 1)
    elif damage == "its first line cut":
        data = header[:-3]
    elif damage == "truncated":
        data = data[:len(data) - 5]
    elif damage == "a byte changed":
        data = header + b"\n" + body[:10] + bytes([body[10] ^ 1]) + body[11:]  # a run's key
    else:  # another root's runs under its checksum
        tag, _, owner = header.split(b" ", 2)
        body = b_keys + body[body.index(b"\n"):]
        data = b"%s %08x %s\n" % (tag, zlib.crc32(body), owner) + body
    record.write_bytes(data)


@pytest.mark.parametrize("damage", ["its root changed", "its first line cut", "truncated", "a byte changed",
                                    "b's runs"])
def test_a_damaged_record_removes_no_entry(roots, cache_dir, tmp_path, damage):
    a, b = roots
    of_a = a_reported(roots, cache_dir, tmp_path)
    before = report(b, tmp_path / "b-before")
    of_b = held(cache_dir) - of_a
    (b_record,) = [name for name in of_b if name.startswith("roots/")]
    damaged_record(cache_dir / "roots", damage, (cache_dir / b_record).read_bytes().split(b"\n")[1])
    if damage in ("its root changed", "its first line cut"):
        damaged_record(cache_dir / "figures" / "roots", damage)
    shutil.rmtree(a)
    assert report(b, tmp_path / "b-after") == before
    entries = {name for name in of_a if kinds({name}) <= {"run", "checks"}}
    assert entries <= held(cache_dir) and of_b <= held(cache_dir)
    if damage in ("its root changed", "its first line cut"):  # no root: nothing goes, the record neither
        assert held(cache_dir) == of_a | of_b
    else:  # its root's: its studies' folder and the record go, and the figures
        assert held(cache_dir) == entries | of_b


def test_an_upgrade_removes_older_records_and_study_files(roots, cache_dir, tmp_path):
    a, b = roots
    report(b, tmp_path / "b")
    of_b = held(cache_dir)
    older = {"roots/" + "1" * 32 + ".json": b"dgnroot/2 00000000\n",
             "studies/ab/" + "ab" * 16 + ".json": b"{}",
             "figures/roots/" + "2" * 40 + ".json": b'["sweep"]'}
    for name, data in older.items():
        (cache_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (cache_dir / name).write_bytes(data)
    (cache_dir / "layout").write_text("diagnose cache 3\n")
    (cache_dir / "figures" / "layout").write_text("diagnose figures 2\n")
    report(b, tmp_path / "b")
    assert held(cache_dir) == of_b


def test_a_study_deleted_from_a_root_loses_its_file(roots, cache_dir, tmp_path):
    a, _ = roots
    before, _ = report(a, tmp_path / "a-before")
    studies = {name for name in held(cache_dir) if name.startswith("studies/")}
    assert len(studies) == 2  # the sweep's and the lone run's
    shutil.rmtree(a / "alone")
    document, _ = report(a, tmp_path / "a-after")
    left = {name for name in held(cache_dir) if name.startswith("studies/")}
    assert len(left) == 1 and left < studies
    assert [s["study"] for s in document["studies"]] == [s["study"] for s in before["studies"] if s["study"] != "alone"]
    # the study left is served from its file: the next report reads no run's table, the same document
    assert report(a, tmp_path / "a-again")[0] == document
