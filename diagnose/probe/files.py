"""The files of one run directory (CONTRACT §1 ``diagnose.run/1``), written so that a crash leaves them readable.

``run.json`` is replaced atomically; CSV rows are appended one window at a
time with a single ``write``, so a killed process leaves at most a cut last
line, which the reader ignores.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

FORMAT = "diagnose.run/1"


def write_run_json(folder: Path, meta: dict) -> None:
    """Write ``run.json`` atomically (a temporary file, then a rename)."""
    temporary = folder / ".run.json.tmp"
    temporary.write_text(json.dumps({"format": FORMAT, **meta}, indent=1, default=_jsonable) + "\n", encoding="utf-8")
    os.replace(temporary, folder / "run.json")


def _jsonable(value):
    # Config values such as tensors, numpy numbers or paths: keep what they say.
    if hasattr(value, "item") and callable(value.item):
        try:
            return value.item()
        except (TypeError, ValueError, RuntimeError):
            pass
    return str(value)


def cell(value) -> str:
    """A CSV cell: ``''`` for missing, integers as such, floats to 9 significant digits (float32-exact)."""
    if type(value) is float:  # the common case first: a flush formats hundreds of them
        return format(value, ".9g") if value == value else "nan"
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace('"', '""') + '"' if any(c in value for c in ',"\n\r') else value
    value = float(value)
    if math.isnan(value):
        return "nan"
    return format(value, ".9g")


def rows(columns: list[list | None], length: int) -> str:
    """CSV lines of ``length`` rows (a None column: empty cells), each cell as ``cell`` writes it, in one C-level ``%`` pass.

    A column of floats only (or of ints only), the usual case, becomes a ``%.9g`` (``%d``) field: it
    formats as ``cell`` does (nan, inf, -0), and the whole window is one call, so the writer thread holds
    the GIL once for a short time instead of once per value. A float column of one non-zero value (lr,
    momentum between schedule changes) is formatted once, into the line's pattern (a zero could be -0.0).
    """
    fields, values = [], []
    for column in columns:
        if column is None:
            fields.append("")
            continue
        kinds = set(map(type, column))
        if kinds == {float}:
            if column[0] and column.count(column[0]) == len(column):
                fields.append("%.9g" % column[0])
                continue
            fields.append("%.9g")
        elif kinds == {int}:
            fields.append("%d")
        else:
            fields.append("%s")
            column = list(map(cell, column))
        values.append(column)
    # Row by row: each column into every len(values)-th slot (C-level slice assignments, no tuple per row).
    flat = [None] * (len(values) * length)
    for offset, column in enumerate(values):
        flat[offset::len(values)] = column
    return ((",".join(fields) + "\n") * length) % tuple(flat)


class CsvAppender:
    """Appends columns (name -> equal-length lists) to a CSV whose columns may widen: a new column rewrites it once."""

    def __init__(self, path: Path, columns: list[str], resume: bool = False):
        """Start ``path`` with a header of ``columns``; with ``resume``, continue an existing file instead."""
        self.path = path
        self.columns = list(columns)
        self.last_key: str | None = None
        if resume and path.is_file() and path.stat().st_size:
            self._continue()
        else:
            path.write_text(",".join(self.columns) + "\n", encoding="utf-8")

    def _continue(self) -> None:
        with open(self.path, "rb+") as stream:
            data = stream.read()
            if not data.endswith(b"\n"):
                # A row cut short by a crash: drop it, so that new rows start on a line of their own.
                data = data[: data.rfind(b"\n") + 1]
                stream.truncate(len(data))
        lines = data.decode("utf-8").splitlines()
        if not lines:
            self.path.write_text(",".join(self.columns) + "\n", encoding="utf-8")
            return
        self.columns = lines[0].split(",")
        self.last_key = lines[-1].split(",", 1)[0] if len(lines) > 1 else None

    def append(self, columns: dict[str, list]) -> None:
        """Append the rows (one ``write``)."""
        new = [name for name in columns if name not in self.columns]
        if new:
            self._widen(new)
        length = len(next(iter(columns.values())))
        data = memoryview(rows([columns.get(name) for name in self.columns], length).encode("utf-8"))
        # os.open and os.write, not open(): a text file object costs the writer thread ~60 us per window.
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            while data:  # a write to a regular file is cut short only when the disk fills up
                data = data[os.write(descriptor, data):]
        finally:
            os.close(descriptor)

    def _widen(self, new: list[str]) -> None:
        lines = self.path.read_text(encoding="utf-8").splitlines()
        padding = "," * len(new)
        lines = [",".join(self.columns + new)] + [line + padding for line in lines[1:]]
        temporary = self.path.with_name("." + self.path.name + ".tmp")
        temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.replace(temporary, self.path)
        self.columns += new
