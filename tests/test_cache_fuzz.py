"""A warm cache with one byte changed or cut anywhere gives the findings of no cache at all, never a wrong run."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from diagnose.cache import RunCache
from diagnose.checks import CHECKS
from diagnose.pipeline import analyze_root
from comparable import document

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
TRIALS = 40
# Other settings of a run check: every run is checked again on its tables as the cache holds them.
RETUNED = tuple(c.configured({"start_factor": "100"}) if c.id == "divergence" else c for c in CHECKS)


def damaged(data: bytes, rng: random.Random) -> bytes:
    """``data`` with one bit flipped, or cut short, somewhere."""
    at = rng.randrange(len(data))
    if rng.random() < 0.25:
        return data[:at]
    return data[:at] + bytes([data[at] ^ 1 << rng.randrange(8)]) + data[at + 1:]


@pytest.mark.parametrize("checks", [CHECKS, RETUNED], ids=["same settings", "other settings"])
def test_one_damaged_byte_anywhere_in_a_warm_cache_changes_no_finding(tmp_path, checks):
    expected = document(analyze_root(SAMPLES, checks, jobs=1))
    warm = tmp_path / "warm"
    analyze_root(SAMPLES, jobs=1, cache=RunCache(warm))
    files = sorted(path.relative_to(warm) for path in warm.rglob("*") if path.is_file() and path.stat().st_size)
    # mostly the run entries, where the tables are: a random file would mostly be a small one
    entries = [path for path in files if path.suffix == ".run"]
    rng = random.Random(7)
    for trial in range(TRIALS):
        cache = tmp_path / str(trial)
        shutil.copytree(warm, cache)
        path = cache / rng.choice(entries if trial % 2 else files)
        path.write_bytes(damaged(path.read_bytes(), rng))
        assert document(analyze_root(SAMPLES, checks, jobs=1, cache=RunCache(cache))) == expected, path
        shutil.rmtree(cache)
