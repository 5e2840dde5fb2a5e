"""The run cache forgets the entries of runs gone from a log root (``RunCache.forget_absent``), and only those."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from diagnose import cache as cache_module
from diagnose.cache import RunCache
from diagnose.model import Run

ROOT = "/logs"


def key(place: str) -> str:
    return f"{place * 32}.{'0' * 16}.{'1' * 32}"


def a_run(tmp_path: Path) -> Run:
    steps = pd.DataFrame({"step": np.arange(3, dtype=np.int64), "loss": [3.0, 2.0, 1.0]})
    return Run(name="r", study="s", source=tmp_path / "r", steps=steps, status="finished")


def stored(tmp_path: Path, *places: str) -> RunCache:
    cache = RunCache(tmp_path / "cache")
    for place in places:
        assert cache.store(key(place), a_run(tmp_path), "checks", [], [])
        assert cache.store(key(place), a_run(tmp_path), "other", [], [])  # findings beside the entry
    return cache


def command(cache: RunCache, root: str, keys: list[str], variant: str = "") -> None:
    """What a command on ``root`` does with its runs' ``keys``: forget the absent ones, then record the present."""
    cache.forget_absent(root, keys, variant)
    cache.record(keys)


def held(cache: RunCache, *places: str) -> list[bool]:
    return [Path(cache._entry(key(place))).exists() for place in places]


def test_the_entry_of_a_run_gone_since_the_last_command_is_removed_with_its_findings(tmp_path):
    cache = stored(tmp_path, "a", "b", "c")
    command(cache, ROOT, [key("a"), key("b"), key("c")])
    assert held(cache, "a", "b", "c") == [True, True, True]
    command(cache, ROOT, [key("a"), key("c")])  # b deleted from the root
    assert held(cache, "a", "b", "c") == [True, False, True]
    assert not Path(f"{cache._entry(key('b'))}.checks").exists()
    assert cache.load(key("a"), "other", (Path(ROOT), tmp_path / "r", "diagnose.readers.rundir", None))[1] == []


def test_a_first_command_another_root_or_other_key_names_remove_nothing(tmp_path):
    cache = stored(tmp_path, "a", "b")
    command(cache, ROOT, [key("a")])  # no record yet: nothing known to be gone
    command(cache, "/other", [key("b")])
    command(cache, ROOT, [key("b")], variant="{'loss': 'train/loss'}")
    assert held(cache, "a", "b") == [True, True]
    command(cache, ROOT, [])
    assert held(cache, "a", "b") == [False, True]


def test_a_damaged_record_removes_no_file_but_entries_and_is_replaced(tmp_path):
    cache = stored(tmp_path, "a")
    outside = tmp_path / "precious"
    outside.write_text("keep")
    command(cache, ROOT, [key("a")])
    (record,) = (tmp_path / "cache" / "roots").iterdir()
    written = record.read_bytes()
    header, body = written.split(b"\n", 1)
    names, texts = body.split(b"\n", 1)
    forged = b"../../precious " + names + b"\n\n" + texts  # the forged name first, with no JSON
    owner = header.split(b" ", 2)[2]  # the root's JSON, as written
    whole = f"{cache_module._RECORD} {zlib.crc32(forged):08x} ".encode() + owner + b"\n" + forged  # checksum right
    for data in (b'["../../precious", "' + b"a" * 32 + b'"]', b"{not json", header + b"\n" + forged, whole,
                 written[:-3], written.replace(cache_module._RECORD.encode(), b"dgnroot/0"), b"\xff" + written):
        record.write_bytes(data)
        command(cache, ROOT, [key("a")])
        assert outside.read_text() == "keep" and held(cache, "a") == [True]
        assert record.read_bytes() == written
