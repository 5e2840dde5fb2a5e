"""CPU a native run costs to read and to store in the cache, beside pyarrow's bare parse of the same files.

usage: python benchmarks/read_overhead.py ROOT [RUNS] [REPEATS]

For each of the first RUNS run directories of ROOT, interleaved, REPEATS times: the bare
``pyarrow.csv.read_csv`` of its steps.csv and evals.csv (the reader's options), ``read_columns`` of its
steps.csv and of its evals.csv (which a small file reads without pyarrow), ``read_run``, and ``RunCache._write_run`` of the run (into a temporary folder, removed).
Prints CPU ms a run (process_time: every thread), each file's minimum over the repeats, summed: what
other processes on the machine add is left out. The reader's cost beyond the parse is read_run - bare.
Also the page faults a run (mean): each new 100k-row array costs ~200, much of its time on a loaded machine.
"""

from __future__ import annotations

import gc
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from diagnose.cache import RunCache
from diagnose.readers import discover, read_run, rundir
from diagnose.readers.keys import DEFAULT_KEYS
from diagnose.readers.table import read_columns


def bare_parse(folder: Path) -> None:
    for name in (rundir.STEPS_FILE, rundir.EVALS_FILE):
        path = folder / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        header = data[:data.find(b"\n")].decode().strip().split(",")
        types = {c: pa.string() if c == "split" else pa.float64() for c in header}
        pacsv.read_csv(pa.BufferReader(pa.py_buffer(data)),
                       read_options=pacsv.ReadOptions(column_names=header, skip_rows=1),
                       convert_options=pacsv.ConvertOptions(null_values=[""], strings_can_be_null=True,
                                                            column_types=types))


def main(root: Path, count: int, repeats: int) -> None:
    folders = [folder for folder, reader in discover(root, DEFAULT_KEYS) if reader is rundir][:count]
    with tempfile.TemporaryDirectory() as scratch:
        cache = RunCache(Path(scratch))
        runs = [read_run(root, folder, rundir, DEFAULT_KEYS) for folder in folders]
        for run in runs:
            run.facts, run.lr, run.momentum  # noqa: B018 - what an entry stores, found before timing

        def write(index: int) -> None:
            entry = os.path.join(scratch, "00", f"{index}.run")
            cache._write_run(entry, runs[index], {})
            os.unlink(entry)

        cases = {
            "bare pyarrow parse": lambda i: bare_parse(folders[i]),
            "read_columns steps": lambda i: read_columns(folders[i] / rundir.STEPS_FILE, required=("step", "loss"),
                                                         numeric=rundir.STEP_COLUMNS, step="step"),
            "read_columns evals": lambda i: read_columns(folders[i] / rundir.EVALS_FILE, required=("step", "split"),
                                                         numeric=("loss",), text=("split",), step="step"),
            "read_run": lambda i: read_run(root, folders[i], rundir, DEFAULT_KEYS),
            "RunCache._write_run": write,
        }
        best = {name: [float("inf")] * len(folders) for name in cases}
        faults = dict.fromkeys(cases, 0)
        gc.disable()
        for _ in range(repeats):
            for index in range(len(folders)):
                for name, case in cases.items():
                    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                    start = time.process_time()
                    case(index)
                    best[name][index] = min(best[name][index], time.process_time() - start)
                    faults[name] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    per_run = {name: 1000 * sum(times) / len(folders) for name, times in best.items()}
    for name, ms in per_run.items():
        print(f"{name:22s} {ms:7.3f} ms/run {faults[name] / len(folders) / repeats:7.0f} page faults/run")
    print(f"{'read_run - bare':22s} {per_run['read_run'] - per_run['bare pyarrow parse']:7.3f} ms/run "
          f"over {len(folders)} runs, best of {repeats}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 50, int(sys.argv[3]) if len(sys.argv) > 3 else 5)
