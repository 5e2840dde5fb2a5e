"""A re-run that the cache serves whole imports none of the table, signal, plotting or YAML libraries.

Importing pandas alone was 0.24 s of a 0.5 s warm ``diagnose check``: the
warm path must not pay for what it does not use. Each command runs in a fresh
interpreter under ``-X importtime``, which lists every module it imports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

UNUSED = ("pandas", "pyarrow", "scipy", "matplotlib", "yaml")
# one small real log of each format the readers know, and a native run directory of two runs
REALWORLD = ("hf_qlora_a", "pl_toy_lstm", "tb_qwen_lora", "txt_llmc_gpt2_124m")


@pytest.fixture
def logs(tmp_path):
    realworld = REPO.parent / "shared" / "realworld"
    if not realworld.is_dir():
        pytest.skip(f"{realworld} is absent (it ships beside the repository only in the project's workspace)")
    root = tmp_path / "logs"
    for name in REALWORLD:
        shutil.copytree(realworld / name, root / "realworld" / name)
    shutil.copytree(REPO / "samples" / "spikes", root / "spikes")
    # a plain CSV log: the steps of a sample run, without its run.json
    (root / "csv" / "healthy").mkdir(parents=True)
    shutil.copy(REPO / "samples" / "healthy" / "warmup-cosine-lr0.1" / "steps.csv", root / "csv" / "healthy" / "log.csv")
    return root


def run_diagnose(*args, cache) -> tuple[subprocess.CompletedProcess, set[str]]:
    """``diagnose ARGS`` in a fresh interpreter: its outcome and the top-level packages it imported."""
    env = {**os.environ, "DIAGNOSE_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "diagnose.cli", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=cache.parent, timeout=300)
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0]
                for line in done.stderr.splitlines() if line.startswith("import time:") and "|" in line}
    return done, imported


def test_check_run_again_imports_no_library_it_does_not_use(logs, tmp_path):
    cache = tmp_path / "cache"
    first, first_imports = run_diagnose("check", logs, cache=cache)
    again, imported = run_diagnose("check", logs, cache=cache)
    assert first.returncode in (0, 1) and "unreadable" not in first.stderr, first.stderr[-2000:]
    assert {"pandas", "pyarrow"} <= first_imports  # what the cold run reads with (the test can see imports)
    assert (again.returncode, again.stdout) == (first.returncode, first.stdout)
    assert sorted(imported & set(UNUSED)) == []


def test_report_run_again_imports_no_library_it_does_not_use(logs, tmp_path):
    cache = tmp_path / "cache"
    outputs = [tmp_path / f"report{n}.html" for n in (1, 2)]
    first, _ = run_diagnose("report", logs, "-o", outputs[0], "--json", tmp_path / "first.json", cache=cache)
    again, imported = run_diagnose("report", logs, "-o", outputs[1], "--json", tmp_path / "again.json", cache=cache)
    assert first.returncode == 0, first.stderr[-2000:]
    assert again.returncode == 0 and outputs[1].is_file(), again.stderr[-2000:]
    assert sorted(imported & set(UNUSED)) == []
