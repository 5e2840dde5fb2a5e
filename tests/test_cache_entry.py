"""A run cache entry's file: its tables read back exactly, and an entry that is damaged, cut short or of
another layout is a miss (dropped, the run read again), never a run read back wrong."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xxhash

from diagnose import cache as cache_module
from diagnose import files
from diagnose.cache import RunCache
from diagnose.model import Run, empty_evals

KEY = "ab" + "0" * 62


def sample_run(tmp_path: Path, steps: pd.DataFrame | None = None, evals: pd.DataFrame | None = None) -> Run:
    if steps is None:
        steps = pd.DataFrame({
            "step": np.array([0, 1, 2, 2**40], dtype=np.int64),
            "loss": [np.nan, np.inf, -0.0, 5e-324],
            "grad_norm": np.array([1.0, -np.inf, np.nan, 2.5], dtype=np.float32),
            "clipped": np.array([1, 0, 1, 255], dtype=np.uint8),
        })
    if evals is None:
        evals = pd.DataFrame({
            "step": np.array([0, 2, 2], dtype=np.int64),
            "split": pd.array(["valid", None, "tränch"], dtype="str"),
            "loss": [1.5, np.nan, 2.0],
        })
    return Run(name="r", study="s", source=tmp_path / "logs" / "s" / "r", steps=steps, evals=evals,
               config={"lr": 0.1}, status="finished", nan_steps={"loss": np.array([0], dtype=np.int64)})


def source(tmp_path: Path) -> tuple:
    """Where a damaged entry's run would be read again from: nowhere, so a test sees any such read as an error."""
    return (tmp_path / "logs", tmp_path / "logs" / "s" / "r", "diagnose.readers.rundir", None)


def stored(tmp_path: Path, run: Run) -> tuple[RunCache, Path]:
    cache = RunCache(tmp_path / "cache")
    assert cache.store(KEY, run, "checks", [], [])
    return cache, Path(cache._entry(KEY))


def assert_same_table(after: pd.DataFrame, before: pd.DataFrame) -> None:
    assert list(after.dtypes) == list(before.dtypes)
    assert after.columns.equals(before.columns) and after.index.equals(before.index)
    pd.testing.assert_frame_equal(after, before, check_exact=True)
    for name in before.columns:  # -0.0 and the smallest subnormal kept bit for bit
        if before[name].dtype.kind == "f":
            assert after[name].to_numpy().tobytes() == before[name].to_numpy().tobytes()


@pytest.mark.parametrize("written", ["copied", "from the columns"])
@pytest.mark.parametrize("evals", ["str", "str in pieces", "object", "empty"])
def test_tables_read_back_exactly(tmp_path, evals, written, monkeypatch):
    if written == "from the columns":  # as a large table is, a few buffers a system call
        monkeypatch.setattr(cache_module, "_COPIED_BELOW", 0)
        monkeypatch.setattr(files, "_IOV_MAX", 3)
    tables = {
        "str": None,
        "str in pieces": pd.concat([sample_run(tmp_path).evals, sample_run(tmp_path).evals], ignore_index=True),
        "object": pd.DataFrame({"step": [3, 4], "split": np.array(["valid", None], dtype=object), "loss": [1.0, 2.0]}),
        "empty": empty_evals(),
    }
    run = sample_run(tmp_path, evals=tables[evals])
    cache, _ = stored(tmp_path, run)
    again, findings, skipped = cache.load(KEY, "checks", source(tmp_path))
    assert findings == [] and skipped == []
    assert again.name == run.name and again.config == run.config
    assert np.array_equal(again.nan_steps["loss"], run.nan_steps["loss"])
    assert_same_table(again.steps, run.steps)
    assert_same_table(again.evals, run.evals)


def test_a_table_written_in_pieces_reads_back_the_same(tmp_path, monkeypatch):
    real = os.writev
    calls = []
    # the kernel may take fewer bytes than asked: the rest is written after
    monkeypatch.setattr(os, "writev", lambda handle, parts: calls.append(1) or real(handle, [bytes(parts[0])[:7]]))
    run = sample_run(tmp_path)
    cache, _ = stored(tmp_path, run)
    monkeypatch.setattr(os, "writev", real)
    assert len(calls) > 10
    again = cache.load(KEY, "checks", source(tmp_path))[0]
    assert_same_table(again.steps, run.steps)
    assert_same_table(again.evals, run.evals)


def test_a_failed_write_leaves_neither_entry_nor_staging_file(tmp_path, monkeypatch):
    def full(handle, parts):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "writev", full)
    cache = RunCache(tmp_path / "cache")
    assert not cache.store(KEY, sample_run(tmp_path), "checks", [], [])
    assert [path for path in (tmp_path / "cache").rglob("*") if path.is_file()] == []
    assert cache.load(KEY, "checks", source(tmp_path)) is None


def test_an_entry_cut_short_anywhere_is_a_miss_and_dropped(tmp_path):
    cache, entry = stored(tmp_path, sample_run(tmp_path))
    data = entry.read_bytes()
    for size in (0, 1, 39, len(data) // 3, len(data) // 2, len(data) - cache_module._TRAILER.size, len(data) - 1):
        entry.write_bytes(data[:size])
        assert cache.load(KEY, "checks", source(tmp_path)) is None, size
        assert not entry.exists()


def test_an_entry_of_the_previous_layout_is_a_miss_not_misread(tmp_path):
    """Two Arrow IPC files, the JSON, and where each of the three ends: what entries were before this layout."""
    import pyarrow as pa

    run = sample_run(tmp_path)
    cache, entry = stored(tmp_path, run)
    meta = json.loads(cache_module._meta_text(str(entry)))
    sink = pa.BufferOutputStream()
    ends = []
    for table in (run.steps, run.evals):
        arrow = pa.Table.from_pandas(table, preserve_index=False)
        with pa.ipc.new_file(sink, arrow.schema) as writer:
            writer.write_table(arrow)
        ends.append(sink.tell())
    text = json.dumps(meta).encode()
    entry.write_bytes(sink.getvalue().to_pybytes() + text + struct.pack("<3Q", *ends, ends[-1] + len(text)))
    assert cache.load(KEY, "checks", source(tmp_path)) is None
    assert not entry.exists()


@pytest.mark.parametrize("damage", ["tag", "order", "end", "json"])
def test_an_entry_whose_trailer_does_not_fit_it_is_a_miss(tmp_path, damage):
    cache, entry = stored(tmp_path, sample_run(tmp_path))
    data = entry.read_bytes()
    *ends, steps_digest, evals_digest, crc, tag, version = cache_module._TRAILER.unpack(
        data[-cache_module._TRAILER.size:])
    if damage == "tag":
        tag = b"dgnrun/1"
    elif damage == "order":
        ends[0], ends[1] = ends[1], ends[0]
    elif damage == "end":
        ends[-1] -= 8
    else:  # a letter of the run's JSON changed: still JSON, but not what was stored
        at = data.index(b'"name":"', ends[1]) + len(b'"name":"')
        data = data[:at] + bytes([data[at] ^ 0x20]) + data[at + 1:]
    entry.write_bytes(data[:-cache_module._TRAILER.size]
                      + cache_module._TRAILER.pack(*ends, steps_digest, evals_digest, crc, tag, version))
    assert cache.load(KEY, "checks", source(tmp_path)) is None
    assert not entry.exists()


def test_a_table_of_an_entry_replaced_after_loading_is_read_from_the_new_entry(tmp_path):
    """Two writers of one entry: each puts a whole file in place, so a reader sees one or the other, never a mix."""
    first = sample_run(tmp_path)
    cache, entry = stored(tmp_path, first)
    loaded = cache.load(KEY, "checks", source(tmp_path))[0]
    second = sample_run(tmp_path, steps=first.steps.assign(loss=[1.0, 2.0, 3.0, 4.0]))
    entry.unlink()  # a concurrent writer that found no entry either
    assert cache.store(KEY, second, "checks", [], [])
    assert_same_table(loaded.steps, second.steps)
    assert [path.name for path in entry.parent.iterdir()] == [entry.name]


def test_a_run_whose_json_is_longer_than_the_read_of_the_files_end_reads_back_whole(tmp_path):
    run = sample_run(tmp_path)
    run.config = {"notes": "x" * 3 * cache_module._TAIL, "lr": 0.1}
    cache, _ = stored(tmp_path, run)
    assert cache.load(KEY, "checks", source(tmp_path))[0].config == run.config


def test_a_failed_write_of_a_study_or_of_other_checks_findings_leaves_no_file(tmp_path, monkeypatch):
    from diagnose.analyze import StudyWork
    from diagnose.cache import StudyCache

    cache, entry = stored(tmp_path, sample_run(tmp_path))

    def full(handle, parts):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "writev", full)
    assert not cache.store(KEY, sample_run(tmp_path), "other checks", [], [])
    StudyCache(tmp_path / "cache", {}, ()).store("cd" + "0" * 62, StudyWork([], [], {}, {}, {}))
    assert [path.name for path in (tmp_path / "cache").rglob("*") if path.is_file()] == [entry.name]


def many_tables() -> dict[str, pd.DataFrame]:
    floats = np.array([np.nan, np.inf, -np.inf, -0.0, 5e-324, 1.5] * 200)
    strings = ["valid", "train", "tränch", ""] * 5
    return {
        "steps": pd.DataFrame({"step": np.arange(1200), "loss": floats, "lr": floats[::-1].copy()}),
        "numbers": pd.DataFrame({
            "i8": np.array([-128, 0, 127], dtype=np.int8), "i32": np.array([-1, 0, 2**31 - 1], dtype=np.int32),
            "u8": np.array([0, 1, 255], dtype=np.uint8), "u64": np.array([0, 1, 2**64 - 1], dtype=np.uint64),
            "f32": np.array([np.nan, -0.0, np.inf], dtype=np.float32), "f64": [1.0, np.nan, -np.inf],
        }),
        "one column": pd.DataFrame({"loss": [0.5]}),
        "empty": pd.DataFrame({"step": np.array([], dtype=np.int64), "loss": np.array([], dtype=float)}),
        "empty evals": empty_evals(),
        "no columns": pd.DataFrame(index=range(3)),
        "str": pd.DataFrame({"step": np.arange(20), "split": pd.array(strings, dtype="str")}),
        "str missing": pd.DataFrame({"split": pd.array(["valid", None, "train"], dtype="str"), "loss": [1.0, 2.0, 3.0]}),
        "str all missing": pd.DataFrame({"split": pd.array([None, None], dtype="str")}),
        "str in pieces": pd.concat([sample_run(Path()).evals] * 2, ignore_index=True),
        "object": pd.DataFrame({"step": [3, 4], "split": np.array(["valid", None], dtype=object)}),
        "bool": pd.DataFrame({"ok": [True, False], "loss": [1.0, 2.0]}),
        "float16": pd.DataFrame({"h": np.array([1.0, np.nan], dtype=np.float16)}),
        "number names": pd.DataFrame({0: [1.0, 2.0], 1: [3, 4]}),
    }


@pytest.mark.parametrize("read", ["mapped", "copied"])
@pytest.mark.parametrize("name", list(many_tables()))
def test_a_table_reads_back_as_arrows_to_pandas_gives_it(tmp_path, monkeypatch, name, read):
    """A table read back is the frame ``to_pandas`` makes of the mapped entry: values, dtypes, blocks,
    read-only columns."""
    import pyarrow as pa

    from diagnose import frames

    monkeypatch.setattr(cache_module, "_MAPPED_FROM", 0 if read == "mapped" else 1 << 40)
    table = many_tables()[name]
    entry = str(tmp_path / "entry")
    stream = cache_module._ipc_stream(cache_module._record_batch(table))
    end = sum(memoryview(part).nbytes for part in stream)
    digest = xxhash.xxh3_64_intdigest(b"".join(bytes(part) for part in stream))
    files.put(entry, [*stream, cache_module._TRAILER.pack(end, end, end, digest, 0, 0, cache_module._LAYOUT, b"")],
              str(tmp_path))
    got = cache_module._read_table((entry, ""), source(tmp_path), "steps")
    batch = pa.ipc.open_stream(pa.memory_map(entry).read_buffer().slice(0, end)).read_next_batch()
    expected = batch.to_pandas(use_threads=False, split_blocks=True)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert list(got.dtypes) == list(expected.dtypes)
    assert got.columns.equals(expected.columns) and got.columns.dtype == expected.columns.dtype
    assert type(got.index) is type(expected.index) and got.index.equals(expected.index)
    assert repr(got._mgr) == repr(expected._mgr)
    assert frames._writeable(got) == frames._writeable(expected)
    for position in range(got.shape[1]):
        values, expected_values = frames.column(got, position), frames.column(expected, position)
        if isinstance(values, np.ndarray) and values.dtype.kind in "iuf":  # -0.0 and NaN's bits kept
            assert values.tobytes() == expected_values.tobytes()
            assert values.flags.writeable == expected_values.flags.writeable
    if name != "no columns":  # an Arrow batch of no columns has no rows: that table never read back whole
        assert_same_table(got, table.set_axis(expected.columns, axis=1) if name == "number names" else table)
