"""Peak memory of reading a ~1 GB log: a run directory and a plain CSV (pyarrow), a plain-text log (line by line).

Writes each file into a temporary folder, then reads it with its reader in a
fresh process and reports the wall time, the peak RSS of that process and the
rows read. The goal: a 1 GB log must not need 10 GB of memory.

Run by hand (not a test; needs ~2 GB of free disk per format):

    python benchmarks/reader_memory.py                    # every format, 1 GB each
    python benchmarks/reader_memory.py --gb 0.1 --formats run csv
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

READ = """
import json, resource, sys, time
from pathlib import Path
from diagnose.readers import csvlog, rundir, textlog
reader = {"run": rundir, "csv": csvlog, "text": textlog}[sys.argv[1]]
start = time.perf_counter()
run = reader.read(Path(sys.argv[2]), "bench")
seconds = time.perf_counter() - start
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_kib / 1024, "steps": run.n_steps,
                  "evals": len(run.evals), "columns": list(run.steps.columns)}))
"""

CHUNK_ROWS = 1_000_000


def write_csv(path: Path, target_bytes: int) -> None:
    """``step,loss,grad_norm,lr,val_loss``: a decaying noisy loss, an eval every 100 steps."""
    rng = np.random.default_rng(0)
    with pacsv.CSVWriter(str(path), pa.schema([("step", pa.int64()), ("loss", pa.float64()),
                                               ("grad_norm", pa.float64()), ("lr", pa.float64()),
                                               ("val_loss", pa.float64())])) as writer:
        start = 0
        while path.stat().st_size < target_bytes:
            steps = np.arange(start, start + CHUNK_ROWS)
            loss = 2.0 + 3.0 / np.sqrt(1 + steps / 1000) + rng.normal(0, 0.05, CHUNK_ROWS)
            val = np.where(steps % 100 == 99, loss + 0.1, np.nan)
            writer.write_table(pa.table({
                "step": steps, "loss": loss, "grad_norm": np.abs(rng.normal(1, 0.2, CHUNK_ROWS)),
                "lr": np.full(CHUNK_ROWS, 3e-4), "val_loss": pa.array(val, from_pandas=True),
            }))
            start += CHUNK_ROWS


def write_run(folder: Path, target_bytes: int) -> None:
    """A ``diagnose.run/1`` directory: ``steps.csv`` as the plain CSV without ``val_loss``, evals every 100 steps."""
    rng = np.random.default_rng(0)
    (folder / "run.json").write_text(json.dumps({"format": "diagnose.run/1", "status": "finished"}))
    path = folder / "steps.csv"
    with pacsv.CSVWriter(str(path), pa.schema([("step", pa.int64()), ("loss", pa.float64()),
                                               ("grad_norm", pa.float64()), ("lr", pa.float64())])) as writer:
        start = 0
        while path.stat().st_size < target_bytes:
            steps = np.arange(start, start + CHUNK_ROWS)
            loss = 2.0 + 3.0 / np.sqrt(1 + steps / 1000) + rng.normal(0, 0.05, CHUNK_ROWS)
            writer.write_table(pa.table({"step": steps, "loss": loss, "grad_norm": np.abs(rng.normal(1, 0.2, CHUNK_ROWS)),
                                         "lr": np.full(CHUNK_ROWS, 3e-4)}))
            start += CHUNK_ROWS
    evals = np.arange(99, start, 100)
    pacsv.write_csv(pa.table({"step": evals, "split": ["valid"] * len(evals), "loss": 2.0 + 3.0 / np.sqrt(1 + evals / 1000)}),
                    str(folder / "evals.csv"))


def write_text(path: Path, target_bytes: int) -> None:
    """modded-nanogpt style: ``step:N/M train_loss:X train_time:Tms step_avg:Ams`` plus val lines."""
    rng = np.random.default_rng(0)
    total = 30_000_000
    with open(path, "w") as handle:
        start = 0
        while handle.tell() < target_bytes:
            steps = np.arange(start, start + 100_000)
            loss = 2.0 + 3.0 / np.sqrt(1 + steps / 1000) + rng.normal(0, 0.05, len(steps))
            lines = [f"step:{s}/{total} train_loss:{v:.4f} train_time:{s * 138}ms step_avg:138.{s % 97:02d}ms\n"
                     + (f"step:{s}/{total} val_loss:{v + 0.1:.4f}\n" if s % 1000 == 999 else "")
                     for s, v in zip(steps.tolist(), loss.tolist())]
            handle.write("".join(lines))
            start += len(steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="size of each generated log (default 1)")
    parser.add_argument("--formats", nargs="+", choices=["run", "csv", "text"], default=["run", "csv", "text"])
    args = parser.parse_args()
    target = int(args.gb * (1 << 30))
    for fmt in args.formats:
        with tempfile.TemporaryDirectory(prefix="diagnose-bench-") as tmp:
            folder = Path(tmp) / "run"
            folder.mkdir()
            started = time.perf_counter()
            if fmt == "run":
                write_run(folder, target)
            else:
                (write_csv if fmt == "csv" else write_text)(folder / ("log.csv" if fmt == "csv" else "train.log"), target)
            written = time.perf_counter() - started
            size_mb = sum(path.stat().st_size for path in folder.iterdir()) / (1 << 20)
            result = subprocess.run([sys.executable, "-c", READ, fmt, str(folder)], capture_output=True, text=True)
            if result.returncode != 0:
                sys.exit(f"{fmt}: reading failed:\n{result.stderr}")
            numbers = json.loads(result.stdout)
            print(f"{fmt:5} {size_mb:8.0f} MB (written in {written:.0f} s): read in {numbers['seconds']:.1f} s, "
                  f"peak RSS {numbers['peak_rss_mb']:.0f} MB, {numbers['steps']} steps, {numbers['evals']} evals, "
                  f"columns {','.join(numbers['columns'])}")


if __name__ == "__main__":
    main()
