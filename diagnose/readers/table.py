"""Numeric CSV tables read fast (pyarrow) with line-exact errors.

pyarrow parses the whole file on both cores and keeps an empty cell (missing)
apart from a literal ``nan`` (a value). When it refuses a file, a slow pass
over the lines finds the first bad one, so the user reads
``steps.csv:57: column 'loss': 'abc' is not a number`` instead of a traceback.
"""

from __future__ import annotations

import csv
import io
import mmap
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..errors import LogError

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|nan|inf|infinity)", re.I)


# Steps above this are not exact in float64 (and no run takes that many): an error, not a wrapped int64.
MAX_STEP = 2**53


@dataclass
class Table:
    """A parsed table: float64 columns (text columns as object), plus what was noticed."""

    frame: pd.DataFrame
    nan_rows: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def read_table(
    path: Path,
    required: tuple[str, ...],
    numeric: tuple[str, ...] = (),
    text: tuple[str, ...] = (),
    index_column: str | None = None,
) -> Table:
    """Read a CSV whose header names ``required`` columns.

    ``required`` and ``numeric`` columns must hold numbers (or be empty);
    ``text`` columns are kept as strings; any other column is kept when it is
    numeric and left out, with a note, when it holds text. ``index_column``
    names an unnamed first column (the index that pandas' ``to_csv`` writes).
    """
    header = _read_header(path, required, index_column)
    forced_numeric = [c for c in header if c in required or c in numeric]
    limit, notes = _complete_lines_end(path, header, forced_numeric, text)

    column_types = {c: pa.float64() for c in forced_numeric}
    column_types.update({c: pa.string() for c in header if c in text})
    try:
        table = _arrow_read(path, limit, column_types, header)
    except pa.ArrowInvalid as error:
        raise _locate_error(path, header, forced_numeric, text, limit, error) from None

    columns: dict[str, object] = {}
    nan_rows: dict[str, np.ndarray] = {}
    for name in header:
        column = table.column(name)
        if name in text:
            columns[name] = np.asarray(column.to_pylist(), dtype=object)
            continue
        if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)
                or pa.types.is_boolean(column.type) or pa.types.is_null(column.type)):
            notes.append(_text_column_note(path, column, name))
            continue
        column = column.cast(pa.float64())
        is_nan = pc.and_(pc.is_nan(column), pc.is_valid(column))
        if pc.any(is_nan).as_py():
            nan_rows[name] = np.flatnonzero(is_nan.to_numpy(zero_copy_only=False))
        columns[name] = column.to_numpy(zero_copy_only=False)
    return Table(frame=pd.DataFrame(columns), nan_rows=nan_rows, notes=notes)


def line_of_row(path: Path, row: int) -> int:
    """The 1-based line of data row ``row`` (0-based), skipping blank lines as the parser does."""
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        seen = -1
        for number, line in enumerate(handle, start=1):
            if number == 1 or not line.strip():
                continue
            seen += 1
            if seen == row:
                return number
    return row + 2


def read_header(path: Path, required: tuple[str, ...] = (), index_column: str | None = None) -> list[str]:
    """The cleaned column names of a CSV's header row; an empty, binary or malformed header is an error."""
    return _read_header(path, required, index_column)


def _read_header(path: Path, required: tuple[str, ...], index_column: str | None = None) -> list[str]:
    with open(path, "rb") as handle:
        raw = handle.readline()
    if not raw.strip():
        raise LogError(path, f"file is empty: expected a header row naming {', '.join(required)}", line=1)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LogError(path, "header is not UTF-8 text (is this a CSV file?)", line=1) from None
    header = [name.strip() for name in next(csv.reader([text]))]
    if index_column is not None and header and not header[0] and index_column not in header:
        header[0] = index_column
    if any(not name for name in header):
        raise LogError(path, f"header has an empty column name: {text.strip()!r}", line=1)
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise LogError(path, f"header names column {duplicates[0]!r} twice", line=1)
    missing = [name for name in required if name not in header]
    if missing:
        raise LogError(
            path,
            f"missing required column {missing[0]!r} (header: {','.join(header)})",
            line=1,
        )
    return header


def _complete_lines_end(path, header, numeric, text) -> tuple[int, list[str]]:
    """Where the parsable part of the file ends: a last line cut short by a crash is left out."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        handle.seek(max(0, size - 65536))
        tail = handle.read()
    if tail.endswith(b"\n") or b"\n" not in tail:
        return size, []
    last_newline = size - (len(tail) - tail.rindex(b"\n") - 1)
    last_line = tail[tail.rindex(b"\n") + 1:].decode("utf-8", errors="replace")
    if _row_problem(last_line, header, numeric, text) is None:
        return size, []
    number = _count_lines(path, last_newline) + 1
    return last_newline, [f"{path.name}:{number}: last line cut short ({last_line[:40]!r}), ignored"]


def _count_lines(path: Path, end: int) -> int:
    count = 0
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
        position = 0
        while position < end:
            chunk = view[position:min(end, position + (1 << 24))]
            count += chunk.count(b"\n")
            position += len(chunk)
    return count


def _arrow_read(path: Path, limit: int, column_types: dict, header: list[str]) -> pa.Table:
    # The names as _read_header cleaned them (stripped, BOM removed, index named), not as pyarrow would.
    read = pacsv.ReadOptions(column_names=header, skip_rows=1)
    convert = pacsv.ConvertOptions(
        null_values=[""],
        strings_can_be_null=True,
        column_types=column_types,
    )
    with pa.memory_map(str(path)) as source:
        buffer = source.read_buffer(limit)
    return pacsv.read_csv(pa.BufferReader(buffer), read_options=read, convert_options=convert)


def _locate_error(path, header, numeric, text, limit, error) -> LogError:
    with open(path, "rb") as handle:
        data = handle.read(limit)
    lines = io.StringIO(data.decode("utf-8", errors="replace"), newline="")
    reader = csv.reader(lines)
    next(reader, None)
    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        problem = _fields_problem(row, header, numeric, text)
        if problem:
            return LogError(path, problem, line=reader.line_num)
    return LogError(path, f"cannot be parsed as CSV: {error}")


def _row_problem(line: str, header, numeric, text) -> str | None:
    rows = list(csv.reader([line]))
    if not rows:
        return "empty line"
    return _fields_problem(rows[0], header, numeric, text)


def _fields_problem(row: list[str], header, numeric, text) -> str | None:
    if len(row) != len(header):
        return f"expected {len(header)} fields ({','.join(header)}), found {len(row)}"
    for name, value in zip(header, row):
        if name in text or value == "":
            continue
        if name in numeric and not _NUMBER.fullmatch(value.strip()):
            return f"column {name!r}: {value[:40]!r} is not a number"
    return None


def _text_column_note(path: Path, column: pa.ChunkedArray, name: str) -> str:
    values = column.cast(pa.string()).to_pylist()
    row = next((i for i, v in enumerate(values) if v is not None and not _NUMBER.fullmatch(v.strip())), 0)
    line = line_of_row(path, row)
    return f"{path.name}:{line}: column {name!r} holds text ({str(values[row])[:40]!r}), not numbers: column left out"


def check_steps(path: Path, frame: pd.DataFrame, column: str = "step") -> np.ndarray:
    """The step column as int64; a missing, negative, fractional or absurdly large step is an error."""
    values = frame[column].to_numpy(dtype=float)
    bad = ~np.isfinite(values) | (values < 0) | (values != np.floor(values)) | (values > MAX_STEP)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        shown = "empty" if np.isnan(values[row]) else repr(float(values[row]))
        raise LogError(path, f"{column} must be a whole number >= 0, found {shown}", line=line_of_row(path, row))
    return values.astype(np.int64)


def order_steps(path: Path, table: Table) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """One row per step, by step; a step logged twice (a resumed run) keeps its last row."""
    frame = table.frame
    steps = check_steps(path, frame)
    frame = frame.assign(step=steps)
    nan_steps = {name: steps[rows] for name, rows in table.nan_rows.items()}
    if len(steps) > 1 and not (np.diff(steps) > 0).all():
        duplicated = frame.duplicated("step", keep="last")
        if duplicated.any():
            first = int(frame.loc[duplicated, "step"].iloc[0])
            table.notes.append(
                f"{path.name}: {int(duplicated.sum())} steps logged more than once (first: step {first}); "
                "the last row of each is used (a resumed run?)"
            )
            frame = frame[~duplicated]
        frame = frame.sort_values("step", kind="stable")
    return frame.reset_index(drop=True), nan_steps


def select_rows(table: Table, mask: np.ndarray) -> Table:
    """The rows where ``mask`` holds, renumbered, with the literal-NaN rows moved along."""
    mask = np.asarray(mask, dtype=bool)
    if mask.all():  # the common case (every row logged the loss): no copy of a big table
        return table
    new_index = np.cumsum(mask) - 1
    nan_rows = {}
    for name, rows in table.nan_rows.items():
        kept = rows[mask[rows]]
        if len(kept):
            nan_rows[name] = new_index[kept]
    return Table(frame=table.frame[mask].reset_index(drop=True), nan_rows=nan_rows, notes=table.notes)
