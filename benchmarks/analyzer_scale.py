"""How the analyzer scales: `diagnose report` against a bare pyarrow parse of the same files.

Generates log roots of realistic runs (a decaying noisy loss, grad norms, lr,
periodic evals, and a few pathologies: spikes, a divergence), then measures in
fresh processes the wall time and peak RSS of

  * the bare parse: pyarrow's CSV reader on every steps.csv and evals.csv;
  * `diagnose report` (cold: no cache), taken in turns with the bare parse;
  * again (warm: the run cache);
  * the warm report after a few runs changed (their files are put back afterwards, size and mtime
    included, so a kept root reads the same to the next benchmark or findings snapshot).

Each is the fastest of three runs; the peak RSS is the largest of the cold runs'.

The package is byte-compiled first (``compileall``), as pip does on install: with
PYTHONDONTWRITEBYTECODE set, every process would otherwise compile its sources again
(~0.07 CPU s a command, the 37 modules a check imports: a third of a warm re-run).

Run by hand (not a test):

    python benchmarks/analyzer_scale.py                 # 1M and 10M rows, 10k small runs
    python benchmarks/analyzer_scale.py --sizes 1M      # just one size
    python benchmarks/analyzer_scale.py --command check # `diagnose check`: the analysis without figures
    python benchmarks/analyzer_scale.py --command read  # the analysis without checks: reading and caching
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SIZES = {
    # name: (runs, steps per run)
    "1M": (10, 100_000),
    "10M": (100, 100_000),
    "10k-runs": (10_000, 1_000),
}
REPEATS = 3

BARE_PARSE = """
import sys
from pathlib import Path
import pyarrow.csv as c
rows = 0
for path in sorted(Path(sys.argv[1]).rglob("*.csv")):
    rows += c.read_csv(path).num_rows
print(rows)
"""

# What the analysis costs before any check: the runs found, keyed, read into the run model (in the workers) and
# written to the cache, and grouped into studies; no check, no document, no page.
READ_ONLY = """
import sys
from pathlib import Path
from diagnose.cache import RunCache, default_directory
from diagnose.pipeline import analyze_root
analyze_root(Path(sys.argv[1]), checks=(), cache=RunCache(default_directory()))
"""


def write_root(root: Path, runs: int, steps: int, seed: int = 0) -> int:
    """A log root of ``runs`` runs in studies of 10; returns the number of step rows."""
    rng = np.random.default_rng(seed)
    step = np.arange(steps)
    for index in range(runs):
        folder = root / f"study{index // 10:04d}" / f"run{index:05d}"
        folder.mkdir(parents=True)
        lr = 0.01 * 3 ** (index % 10 / 3)
        loss = 2.3 * np.exp(-step / (steps / 5)) + 0.2
        loss *= np.exp(rng.normal(0, 0.05, steps))
        if index % 10 == 7:
            at = steps // 2
            loss[at:at + max(1, steps // 200)] *= 8
        if index % 10 == 9:
            loss[int(steps * 0.8):] = np.inf
        grad = np.abs(rng.normal(1, 0.2, steps))
        columns = np.column_stack([step, loss, grad, np.full(steps, lr)])
        with open(folder / "steps.csv", "w") as handle:
            handle.write("step,loss,grad_norm,lr\n")
            np.savetxt(handle, columns, fmt=["%d", "%.6g", "%.5g", "%.4g"], delimiter=",")
        every = max(1, steps // 20)
        with open(folder / "evals.csv", "w") as handle:
            handle.write("step,split,loss\n")
            for s in range(0, steps, every):
                handle.write(f"{s},valid,{loss[s] * 1.1:.6g}\n")
        run = {"format": "diagnose.run/1", "config": {"lr": lr, "seed": index % 2, "max_steps": steps}, "status": "finished"}
        (folder / "run.json").write_text(json.dumps(run))
    return runs * steps


def append_step(path: Path) -> None:
    """One more logged step at the end of ``path``: a run that changed since the last report."""
    with open(path, "rb") as handle:
        handle.seek(-200, os.SEEK_END)
        last = int(handle.read().splitlines()[-1].split(b",")[0])
    with open(path, "a") as handle:
        handle.write(f"{last + 1},0.5,1.0,0.01\n")


def put_back(path: Path, stat: os.stat_result) -> None:
    """``path`` as it was before ``append_step`` (``stat`` is from then): its first bytes and its times."""
    os.truncate(path, stat.st_size)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def measure(command: list[str], env: dict | None = None) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MB, of the largest process) and CPU seconds of a fresh process running ``command``.

    CPU seconds count the worker processes too (waited-for descendants), so
    CPU / wall is how many cores the command kept busy.
    """
    script = (
        "import resource, subprocess, sys, time\n"
        "start = time.perf_counter()\n"
        "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
        "wall = time.perf_counter() - start\n"
        "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, code)\n"
    )
    output = subprocess.run([sys.executable, "-c", script, *command], capture_output=True, text=True, env=env, check=True)
    wall, rss, cpu, code = output.stdout.split()
    if code not in ("0", "1"):
        raise SystemExit(f"{' '.join(command)} exited {code}")
    return float(wall), float(rss), float(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--keep", type=Path, help="generate the roots here and keep them")
    parser.add_argument("--command", choices=("report", "check", "read"), default="report",
                        help="what to time: the HTML report, the CI gate (the same analysis, no figures), or the "
                             "analysis without checks (reading and caching the runs)")
    args = parser.parse_args()
    compileall.compile_dir(Path(importlib.util.find_spec("diagnose").origin).parent, quiet=1)
    diagnose = [sys.executable, "-m", "diagnose.cli"]
    base = args.keep or Path(tempfile.mkdtemp(prefix="diagnose-scale-"))
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    print("command: " + ("analyze_root without checks" if args.command == "read" else f"diagnose {args.command}"))
    # On a shared machine wall times follow the load: the CPU seconds (workers included) and their ratio do not.
    print(f"{'root':10} {'rows':>11} {'parse s':>8} {'report s':>9} {'ratio':>6} {'cores':>5} {'RSS MB':>7} "
          f"{'warm s':>7} {'changed s':>9} {'parse CPU':>9} {'CPU s':>6} {'CPU ratio':>9} {'load':>5}", flush=True)
    try:
        for name in args.sizes:
            runs, steps = SIZES[name]
            root = base / name
            if not root.exists():
                rows = write_root(root, runs, steps)
            else:
                rows = runs * steps
            cache = base / f"cache-{name}"
            shutil.rmtree(cache, ignore_errors=True)
            env = {**os.environ, "DIAGNOSE_CACHE_DIR": str(cache)}
            load = os.getloadavg()[0]
            report = [*diagnose, "report", str(root), "-o", str(base / f"{name}.html")]
            if args.command == "check":
                report = [*diagnose, "check", str(root)]
            if args.command == "read":
                report = [sys.executable, "-c", READ_ONLY, str(root)]
            # The fastest of three for both sides of a ratio, the parse and the cold report taken in turns: one
            # bare parse of the same files ranged 0.60-1.12 s on a quiet machine, and the machine's speed drifts.
            parses, colds = [], []
            for _ in range(REPEATS):
                parses.append(measure([sys.executable, "-c", BARE_PARSE, str(root)]))
                shutil.rmtree(cache, ignore_errors=True)
                colds.append(measure(report, env))
            (parse_s, _, parse_cpu), (cold_s, _, cold_cpu) = min(parses), min(colds)
            cold_rss = max(rss for _, rss, _ in colds)
            warm_s = min(measure(report, env)[0] for _ in range(REPEATS))
            touched = [folder / "steps.csv" for folder in sorted(root.glob("*/*"))[:3]]
            changed = []
            for _ in range(REPEATS):  # each time a new change (a new mtime): the runs are read again
                before = [(path, path.stat()) for path in touched]
                for path in touched:
                    append_step(path)
                try:
                    changed.append(measure(report, env)[0])
                finally:
                    for path, stat in before:
                        put_back(path, stat)
            changed_s = min(changed)
            print(
                f"{name:10} {rows:>11,} {parse_s:8.2f} {cold_s:9.2f} {cold_s / parse_s:6.2f} {cold_cpu / cold_s:5.2f} "
                f"{cold_rss:7.0f} {warm_s:7.2f} {changed_s:9.2f} {parse_cpu:9.2f} {cold_cpu:6.2f} "
                f"{cold_cpu / parse_cpu:9.2f} {load:5.2f}",
                flush=True,
            )
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
