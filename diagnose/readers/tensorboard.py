"""TensorBoard event files (``events.out.tfevents.*``), read with tensorboard's own loader.

Every event file in one folder belongs to the same run (a resumed run writes a
new file beside the old one); they are read in the order they were started
(the wall time of their first event), and a later value of a tag at the same
step wins. Scalars
come as ``simple_value`` (``SummaryWriter.add_scalar``) or as scalar tensors
(the ``scalars`` plugin); tags are mapped like every other log's keys
(``train/loss``, ``train/grad_norm``, ``train/learning_rate``, ``eval/loss``,
``Loss/val``). The Trainer's ``args/text_summary`` (its TrainingArguments as
JSON) or a Lightning ``hparams.yaml`` beside the files gives the config. tensorboard's loader stops quietly at a damaged
record; the reader counts the bytes it consumed, so a damaged file is an
error that names the record and byte, and a last record cut short by a
running writer is a note.
"""

from __future__ import annotations

import json
import struct
from array import array
from pathlib import Path

import numpy as np

from ..errors import LogError
from ..model import Run
from .folders import files_in
from .keys import DEFAULT_KEYS, KeyMap, config_from
from .lightning import HPARAMS_FILE, read_hparams

# The table code (pandas, pyarrow: ``records``, ``table``) is imported where a run's tables are built:
# sniffing the folders of a re-run that the cache serves then imports none of it (0.3 s).

FORMAT = "tensorboard"
EVENT_FILE_MARK = "tfevents"
RECORD_OVERHEAD = 16  # uint64 length, uint32 crc of the length, payload, uint32 crc of the payload
CONFIG_TAGS = ("args/text_summary", "args")


def sniff(folder: Path) -> bool:
    return bool(event_files(folder))


def event_files(folder: Path) -> list[Path]:
    """The event files directly in ``folder``, by name."""
    return files_in(folder, lambda name: EVENT_FILE_MARK in name)


def read(folder: Path, study: str, keys: KeyMap = DEFAULT_KEYS) -> Run:
    """The run whose event files lie in ``folder``."""
    import pandas as pd

    from .records import assemble
    from .table import Table

    files = event_files(folder)
    hparams: dict = {}
    notes: list[str] = []
    per_file = [_read_file(path, hparams, notes) for path in files]
    scalars = _merge(sorted(per_file, key=lambda started_scalars: started_scalars[0]))
    if not scalars:
        names = ", ".join(p.name for p in files)
        raise LogError(files[0], f"no scalar values in {len(files)} event file(s) ({names}): nothing to analyse")
    hparams_path = folder / HPARAMS_FILE  # Lightning's TensorBoardLogger writes one beside its events
    if hparams_path.is_file():
        hparams.update(read_hparams(hparams_path))
    columns, nan_rows = _records(scalars)
    where = files[0] if len(files) == 1 else folder
    parts = assemble(where, Table(frame=pd.DataFrame(columns), nan_rows=nan_rows, notes=notes), keys,
                     what="scalar tags of the event files")
    return parts.run(folder, study, format=FORMAT, config=config_from(hparams, keep_others=hparams_path.is_file()))


def _merge(per_file: list[tuple[float, dict]]) -> dict[str, tuple[array, array]]:
    """Every tag's values, file after file in the order the files were started (a resume comes later)."""
    merged: dict[str, tuple[array, array]] = {}
    for _, scalars in per_file:
        for tag, (steps, values) in scalars.items():
            into = merged.setdefault(tag, (array("q"), array("d")))
            into[0].extend(steps)
            into[1].extend(values)
    return merged


def _read_file(path: Path, hparams: dict, notes: list[str]) -> tuple[float, dict[str, tuple[array, array]]]:
    """(wall time of the first event, {tag: (steps, values)}) of one event file.

    Files are ordered by when they were started, not by name: names of files
    started in the same second sort by a counter that is not zero-padded.
    """
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto import event_pb2
    from google.protobuf.message import DecodeError

    scalars: dict[str, tuple[array, array]] = {}
    size = path.stat().st_size
    if size == 0:
        notes.append(f"{path.name}: empty event file (the writer had not flushed yet)")
        return float("inf"), scalars
    started = None
    consumed = 0
    plugin_of: dict[str, str] = {}
    for number, record in enumerate(RawEventFileLoader(str(path)).Load()):
        try:
            event = event_pb2.Event.FromString(record)
        except (DecodeError, ValueError, RuntimeError):
            raise LogError(path, f"record {number} at byte {consumed} is not a TensorBoard event") from None
        if event.step < 0:
            raise LogError(path, f"record {number} at byte {consumed}: step {event.step} is negative")
        consumed += len(record) + RECORD_OVERHEAD
        if started is None:
            started = event.wall_time
        if event.HasField("summary"):
            for value in event.summary.value:
                _take(value, event.step, scalars, hparams, plugin_of)
    if consumed < size:
        _stopped_early(path, consumed, size, notes)
    return (started if started is not None else float("inf")), scalars


def _stopped_early(path: Path, consumed: int, size: int, notes: list[str]) -> None:
    """The loader stopped before the end: a record cut short (a note) or damaged data (an error)."""
    with open(path, "rb") as handle:
        handle.seek(consumed)
        header = handle.read(12)
    remaining = size - consumed
    if len(header) == 12:
        (length,) = struct.unpack("<Q", header[:8])
        if length + RECORD_OVERHEAD > remaining and _length_crc_ok(header):
            notes.append(f"{path.name}: last record cut short at byte {consumed} (a writer still running?), ignored")
            return
    elif consumed > 0:
        notes.append(f"{path.name}: last record cut short at byte {consumed} (a writer still running?), ignored")
        return
    what = "not a TensorBoard event file" if consumed == 0 else "damaged event file"
    raise LogError(path, f"{what}: unreadable record at byte {consumed} of {size}")


def _length_crc_ok(header: bytes) -> bool:
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    return masked_crc32c(header[:8]) == struct.unpack("<I", header[8:12])[0]


def _take(value, step: int, scalars: dict, hparams: dict, plugin_of: dict) -> None:
    tag = value.tag
    plugin = value.metadata.plugin_data.plugin_name
    if plugin:
        plugin_of.setdefault(tag, plugin)
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        number = float(value.simple_value)
    elif kind == "tensor":
        if plugin_of.get(tag) == "text" and tag in CONFIG_TAGS:
            hparams.update(_text_config(value.tensor))
            return
        if plugin_of.get(tag, "scalars") != "scalars":
            return
        number = _scalar_tensor(value.tensor)
        if number is None:
            return
    else:
        return
    steps, values = scalars.setdefault(tag, (array("q"), array("d")))
    steps.append(int(step))
    values.append(number)


def _scalar_tensor(tensor) -> float | None:
    from tensorboard.util import tensor_util

    try:
        data = tensor_util.make_ndarray(tensor)
    except (TypeError, ValueError):
        return None
    if data.size != 1 or data.dtype.kind not in "fiub":
        return None
    return float(data.reshape(()))


def _text_config(tensor) -> dict:
    """The Trainer's ``args/text_summary``: its TrainingArguments as JSON text."""
    values = list(tensor.string_val)
    if len(values) != 1:
        return {}
    try:
        parsed = json.loads(values[0].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _records(scalars: dict[str, tuple[array, array]]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One row per step, one column per tag (the last value logged at that step), and the rows of literal NaNs."""
    from .records import last_per_step

    all_steps = np.unique(np.concatenate([np.frombuffer(s, dtype=np.int64) for s, _ in scalars.values()]))
    columns = {"step": all_steps}
    nan_rows = {}
    for tag, (steps, values) in scalars.items():
        steps = np.frombuffer(steps, dtype=np.int64)
        values = np.frombuffer(values, dtype=np.float64)
        last = last_per_step(steps)
        column = np.full(len(all_steps), np.nan)
        rows = np.searchsorted(all_steps, steps[last])
        column[rows] = values[last]
        columns[tag] = column
        is_nan = np.isnan(values[last])
        if is_nan.any():
            nan_rows[tag] = np.sort(rows[is_nan])
    return columns, nan_rows
