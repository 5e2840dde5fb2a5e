"""Shared test helpers: a writer of diagnose.run/1 folders for reader and CLI tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def write_run(folder: Path, steps: str | None = "step,loss\n0,1.0\n1,0.9\n", evals: str | None = None, **meta) -> Path:
    """A run directory with ``run.json`` (``meta`` over a valid default) and the given CSV texts."""
    folder.mkdir(parents=True, exist_ok=True)
    document = {"format": "diagnose.run/1", **meta}
    (folder / "run.json").write_text(json.dumps(document))
    if steps is not None:
        (folder / "steps.csv").write_text(steps)
    if evals is not None:
        (folder / "evals.csv").write_text(evals)
    return folder


@pytest.fixture
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (it ships beside the repository only in the project's workspace)")
    return SHARED


@pytest.fixture
def make_run():
    """``make_run(folder, steps=..., evals=..., **run_json)`` writes a run directory."""
    return write_run


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own run cache, never the user's."""
    monkeypatch.setenv("DIAGNOSE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
