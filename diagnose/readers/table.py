"""Numeric CSV tables read fast (pyarrow) with line-exact errors.

pyarrow parses the file (a large one in blocks, on both cores) and keeps an
empty cell (missing) apart from a literal ``nan`` (a value). When it refuses a
file, a slow pass over the lines finds the first bad one, so the user reads
``steps.csv:57: column 'loss': 'abc' is not a number`` instead of a traceback.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..errors import LogError
from ..frames import frame
from . import read_bytes, read_if_file

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|nan|inf|infinity)", re.I)


# Steps above this are not exact in float64 (and no run takes that many): an error, not a wrapped int64.
MAX_STEP = 2**53

_FLOAT64 = pa.float64()
# A file up to this size is parsed as one block, so that its columns are used as pyarrow made them, not joined into
# fresh memory (a 100k-step run: ~3 MB less to copy, ~5% of a cold report's CPU); pyarrow's 1 MB blocks parse a file
# on both cores, which workers busy on both cores already do not need. Above it, blocks again: a huge run's parse on
# both cores.
_BLOCK = 1 << 24


@dataclass
class Table:
    """A parsed table: float64 columns (text columns as pandas holds strings), plus what was noticed."""

    frame: pd.DataFrame
    nan_rows: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def read_table(
    path: Path,
    required: tuple[str, ...],
    numeric: tuple[str, ...] = (),
    text: tuple[str, ...] = (),
    index_column: str | None = None,
    step: str | None = None,
) -> Table:
    """Read a CSV whose header names ``required`` columns (see ``read_columns``)."""
    columns, nan_rows, notes = read_columns(path, required, numeric, text, index_column, step)
    return Table(frame=frame(columns), nan_rows=nan_rows, notes=notes)


def read_columns(
    path: Path,
    required: tuple[str, ...],
    numeric: tuple[str, ...] = (),
    text: tuple[str, ...] = (),
    index_column: str | None = None,
    step: str | None = None,
    if_file: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[str]] | None:
    """Read a CSV whose header names ``required`` columns: its columns by name, the rows of literal NaNs, notes.

    ``required`` and ``numeric`` columns must hold numbers (or be empty);
    ``text`` columns are kept as strings (as pandas holds them); any other column is kept when it is
    numeric and left out, with a note, when it holds text. ``index_column``
    names an unnamed first column (the index that pandas' ``to_csv`` writes).
    ``step`` names the column that numbers the steps: whole numbers >= 0, given as int64.
    ``if_file``: None where ``path`` is no file (``Path.is_file``), found as the file is opened.
    """
    # One read serves the header, the last-line check and the parse (tiny runs pay per system call).
    data = read_if_file(path) if if_file else read_bytes(path)
    if data is None:
        return None
    header = _parse_header(path, data, required, index_column)
    forced_numeric, options = _plan(tuple(header), tuple(required), tuple(numeric), tuple(text))
    limit, notes = _complete_lines_end(path, data, header, forced_numeric, text)

    plain = _plain_columns(data, limit, header, forced_numeric, text, step)
    if plain is not None:
        columns, nan_rows = plain
        if step in columns and columns[step].dtype != np.int64:  # not found whole numbers in range already
            columns[step] = _check_steps(path, columns[step], step)
        return columns, nan_rows, notes

    try:
        table = _arrow_read(data, limit, options)
    except pa.ArrowInvalid as error:
        raise _locate_error(path, data, header, forced_numeric, text, limit, error) from None
    # A literal NaN is spelled with an n: where none follows the header, no column has NaN rows to look for.
    start = data.find(b"\n") + 1
    spelled_nan = data.find(b"n", start, limit) >= 0 or data.find(b"N", start, limit) >= 0
    del data

    # Column by column, each freed once converted: the peak holds one copy of the table, not two.
    parsed = dict(zip(header, table.columns))
    del table
    columns: dict[str, np.ndarray] = {}
    nan_rows: dict[str, np.ndarray] = {}
    for name in header:
        column = parsed.pop(name)
        if name in text:
            columns[name] = _strings(column.to_numpy(), column.null_count)  # object: str, None where empty
            continue
        kind = column.type
        if not (pa.types.is_floating(kind) or pa.types.is_integer(kind)
                or pa.types.is_boolean(kind) or pa.types.is_null(kind)):
            notes.append(_text_column_note(path, column, name))
            continue
        values, rows = _numbers(column, spelled_nan)
        if rows is not None:
            nan_rows[name] = rows
        columns[name] = _check_steps(path, values, name) if name == step else values
    return columns, nan_rows, notes


# A file this small, of plain decimals and text only, is parsed here: pyarrow's fixed cost (~0.1 ms, ~0.2 with
# its columns' conversion) is most of a 20-row evals.csv. Anything else (nan, quotes, CRs, blank lines, a
# column of unknown type, a wrong field count: what pyarrow would read differently or refuse) goes to pyarrow.
SMALL_FILE = 2048
# What pyarrow and float() both read as the same float64 (both round correctly; an exponent of <= 2 digits is
# never out of range), or empty: a column's cells joined by commas, matched at once.
_NUMBER_CELL = r"(-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d{1,2})?|-?inf|nan)?"
_PLAIN_NUMBERS = re.compile(rf"{_NUMBER_CELL}(,{_NUMBER_CELL})*")
_WHOLE_NUMBERS = re.compile(r"(0|[1-9]\d*)(,(0|[1-9]\d*))*")  # none empty


def _plain_columns(data: bytes, limit: int, header: list[str], numeric, text, step) -> tuple[dict, dict] | None:
    """The columns and literal-NaN rows of a small file of plain numbers and text, as the pyarrow read gives them;
    None: not such a file.

    Every column must be a ``text`` or a ``numeric`` one (pyarrow infers the type of any other); empty cells are missing.
    The ``step`` column is int64 when its cells are whole numbers <= MAX_STEP (as ``_check_steps`` gives it).
    """
    if limit > SMALL_FILE or b'"' in data or b"\r" in data or not all(c in text or c in numeric for c in header):
        return None
    if data.find(b"\n", 0, limit) < 0:  # a header without its newline, which pyarrow refuses
        return None
    try:
        lines = data[:limit].decode("utf-8").split("\n")[1:]
    except UnicodeDecodeError:
        return None
    if lines and not lines[-1]:
        lines.pop()  # the last line's newline
    if "" in lines:  # a blank line, which pyarrow skips
        return None
    width = len(header)
    if lines and {line.count(",") for line in lines} != {width - 1}:
        return None
    cells = ",".join(lines).split(",") if lines else []
    columns = {}
    nan_rows = {}
    for index, name in enumerate(header):
        column = cells[index::width]
        if name in text:
            if "" in column:
                columns[name] = _strings(np.array([cell or None for cell in column], dtype=object), True)
            else:
                columns[name] = _small_strings(tuple(column))
            continue
        joined = ",".join(column)
        if name == step and _WHOLE_NUMBERS.fullmatch(joined):
            whole = list(map(int, column))
            if not whole or max(whole) <= MAX_STEP:
                columns[name] = np.array(whole, dtype=np.int64)
                continue
        if not _PLAIN_NUMBERS.fullmatch(joined):
            return None
        if "" in column:
            columns[name] = np.array([float(cell) if cell else np.nan for cell in column], dtype=np.float64)
        else:
            columns[name] = np.array(list(map(float, column)), dtype=np.float64)
        if "nan" in column:
            nan_rows[name] = np.flatnonzero(np.array(column, dtype=object) == "nan")
    return columns, nan_rows


def _strings(values: np.ndarray, empty_cells) -> np.ndarray:
    """Strings (object, None where empty) as pandas holds them in a frame or Series."""
    if empty_cells or not len(values):  # pandas infers these (all empty: object); rare, so not cheaply
        return pd.Series(values).array
    # Strings only: the array pandas would infer, less the inference (0.08 -> 0.01 ms a 20-row column).
    return type(_TEXT)._from_sequence(values, dtype=_TEXT.dtype)


_TEXT = pd.Series(np.array(["text"], dtype=object)).array  # the array pandas makes of strings ("str" in pandas 3)


def _small_strings(cells: tuple[str, ...]):
    """``_strings`` of a small file's column without empty cells, made once: runs log the same splits."""
    return _held_strings(cells).copy()  # its own array object (pyarrow's data, immutable, shared): ~1 us, pandas' ~12


@functools.lru_cache(maxsize=1000)
def _held_strings(cells: tuple[str, ...]):
    return _strings(np.array(cells, dtype=object), False)


def _numbers(column: pa.ChunkedArray, spelled_nan: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """A column as float64 (empty cells NaN), and the rows that wrote a literal NaN (None: none).

    Read-only where it is pyarrow's memory as is (one chunk without empty cells), as a cached run's columns are
    (``frames.from_arrow``) and as pandas hands out a frame's columns.

    ``spelled_nan`` False: the file holds no literal NaN at all, so none is looked for.
    """
    if column.type != _FLOAT64:
        column = column.cast(_FLOAT64)
    # The chunks (one per parsed block) joined by numpy: ChunkedArray.to_numpy took 0.13 ms a 100k-row column,
    # this 0.04. A chunk without empty cells is a view of arrow's memory; with, a copy.
    chunks = column.chunks
    if len(chunks) == 1:
        values = chunks[0].to_numpy(zero_copy_only=False)
    else:
        values = np.concatenate([chunk.to_numpy(zero_copy_only=False) for chunk in chunks]) if chunks else np.empty(0)
    if not spelled_nan or not len(values) or not math.isnan(values.min()):  # the min is NaN when any value is
        return values, None
    is_nan = np.isnan(values)
    if column.null_count:  # an empty cell is NaN in ``values`` too: only the valid ones wrote nan
        is_nan &= pc.is_valid(column).to_numpy()
    rows = np.flatnonzero(is_nan)
    return values, (rows if len(rows) else None)


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
    with open(path, "rb") as handle:
        return _parse_header(path, handle.readline(), required, index_column)


def _parse_header(path: Path, data: bytes, required: tuple[str, ...], index_column: str | None = None) -> list[str]:
    """The header row at the start of ``data`` (the whole file, or its first line)."""
    end = data.find(b"\n")
    try:
        return list(_header_names(data if end < 0 else data[:end + 1], tuple(required), index_column))
    except ValueError as problem:
        raise LogError(path, str(problem), line=1) from None


@functools.lru_cache(maxsize=1000)  # the runs of a root share a few headers; a bad one raises, and is not kept
def _header_names(raw: bytes, required: tuple[str, ...], index_column: str | None) -> tuple[str, ...]:
    """The cleaned column names of the header line ``raw``; ValueError says what is wrong with it."""
    if not raw.strip():
        raise ValueError(f"file is empty: expected a header row naming {', '.join(required)}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError("header is not UTF-8 text (is this a CSV file?)") from None
    header = [name.strip() for name in next(csv.reader([text]))]
    if index_column is not None and header and not header[0] and index_column not in header:
        header[0] = index_column
    if any(not name for name in header):
        raise ValueError(f"header has an empty column name: {text.strip()!r}")
    duplicates = sorted(name for name, count in Counter(header).items() if count > 1)
    if duplicates:
        raise ValueError(f"header names column {duplicates[0]!r} twice")
    missing = [name for name in required if name not in header]
    if missing:
        raise ValueError(f"missing required column {missing[0]!r} (header: {','.join(header)})")
    return tuple(header)


def _complete_lines_end(path: Path, data: bytes, header, numeric, text) -> tuple[int, list[str]]:
    """Where the parsable part of the file ends: a last line cut short by a crash is left out."""
    last_newline = data.rfind(b"\n") + 1
    if last_newline in (0, len(data)):
        return len(data), []
    last_line = data[last_newline:].decode("utf-8", errors="replace")
    if _row_problem(last_line, header, numeric, text) is None:
        return len(data), []
    number = data.count(b"\n", 0, last_newline) + 1
    return last_newline, [f"{path.name}:{number}: last line cut short ({last_line[:40]!r}), ignored"]


def _arrow_read(data: bytes, limit: int, options: tuple) -> pa.Table:
    read, convert = options
    buffer = pa.py_buffer(data)
    if limit < len(data):
        buffer = buffer.slice(0, limit)
    return pacsv.read_csv(pa.BufferReader(buffer), read_options=read, convert_options=convert)


@functools.lru_cache(maxsize=1000)  # made once for the few headers that a root's runs share (~5 us a file)
def _plan(header: tuple[str, ...], required: tuple[str, ...], numeric: tuple[str, ...],
          text: tuple[str, ...]) -> tuple[tuple[str, ...], tuple]:
    """The columns of ``header`` that must hold numbers, and pyarrow's options to read them (float64; ``text``
    columns as strings)."""
    forced_numeric = tuple(c for c in header if c in required or c in numeric)
    # The names as _parse_header cleaned them (stripped, BOM removed, index named), not as pyarrow would.
    read = pacsv.ReadOptions(column_names=list(header), skip_rows=1, block_size=_BLOCK)
    column_types = {c: _FLOAT64 for c in forced_numeric} | {c: pa.string() for c in header if c in text}
    convert = pacsv.ConvertOptions(null_values=[""], strings_can_be_null=True, column_types=column_types)
    return forced_numeric, (read, convert)


def _locate_error(path, data, header, numeric, text, limit, error) -> LogError:
    lines = io.StringIO(data[:limit].decode("utf-8", errors="replace"), newline="")
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


def _check_steps(path: Path, values: np.ndarray, column: str) -> np.ndarray:
    """The step column as int64; a missing, negative, fractional or absurdly large step is an error."""
    if not len(values):
        return values.astype(np.int64)
    if values.min() >= 0 and values.max() <= MAX_STEP:  # no NaN either (its min is NaN): each has an int64
        steps = values.astype(np.int64)
        if (steps == values).all():
            return steps
    bad = ~np.isfinite(values) | (values < 0) | (values != np.floor(values)) | (values > MAX_STEP)
    row = int(np.flatnonzero(bad)[0])
    shown = "empty" if np.isnan(values[row]) else repr(float(values[row]))
    raise LogError(path, f"{column} must be a whole number >= 0, found {shown}", line=line_of_row(path, row))


def order_steps(path: Path, table: Table) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """One row per step, by step; a step logged twice (a resumed run) keeps its last row.

    ``table.frame["step"]`` holds steps checked as they were read (int64), as ``read_table(step=...)`` gives them.
    """
    frame = table.frame
    steps = frame["step"].to_numpy()
    nan_steps = {name: steps[rows] for name, rows in table.nan_rows.items()}
    if len(steps) > 1 and not (steps[1:] > steps[:-1]).all():
        duplicated = frame.duplicated("step", keep="last")
        if duplicated.any():
            first = int(frame.loc[duplicated, "step"].iloc[0])
            table.notes.append(
                f"{path.name}: {int(duplicated.sum())} steps logged more than once (first: step {first}); "
                "the last row of each is used (a resumed run?)"
            )
            frame = frame[~duplicated]
        frame = frame.sort_values("step", kind="stable").reset_index(drop=True)
    return frame, nan_steps


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
