"""The examples of the README section "Wrap your training loop" run, and each writes a run the reader reads."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from diagnose.readers.rundir import read

README = Path(__file__).resolve().parents[2] / "README.md"


def examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Wrap your training loop\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def expected_run(code: str) -> tuple[str, str]:
    study = re.search(r'study="([^"]+)"', code).group(1)
    name = re.search(r'name="([^"]+)"', code).group(1)
    return study, name


def test_the_section_has_every_example():
    codes = examples()
    assert len(codes) == 6
    for needle in ("probe.step(loss, optimizer)", "clip_norm=1.0", "scaler=scaler", "fully_shard",
                   "huggingface import DiagnoseCallback", "lightning import DiagnoseCallback"):
        assert any(needle in code for code in codes), needle


@pytest.mark.parametrize("index", range(6))
def test_example_runs_and_writes_a_finished_run(index, tmp_path, monkeypatch):
    code = examples()[index]
    if "transformers" in code:
        pytest.importorskip("transformers")
    if "lightning" in code:
        pytest.importorskip("lightning")
    if code.startswith("# train_fsdp.py"):
        (tmp_path / "train_fsdp.py").write_text(code)
        launched = _launch(tmp_path)
        if launched.returncode != 0 and TORCH_EXIT_ABORT in launched.stderr:
            launched = _launch(tmp_path)  # a second, clean launch must then succeed in full
        assert launched.returncode == 0, launched.stderr[-2000:]
    else:
        monkeypatch.chdir(tmp_path)
        exec(compile(code, f"README example {index}", "exec"), {"__name__": "__main__"})
    study, name = expected_run(code)
    run = read(tmp_path / "logs" / study / name, study)
    assert run.status == "finished"
    assert len(run.steps) > 0 and run.steps["grad_norm"].notna().all()


# torch 2.13 with gloo sometimes aborts a rank at interpreter exit, after destroy_process_group,
# on a loaded machine: seen in 2 of 24 launches of this example with the probe taken out.
TORCH_EXIT_ABORT = "terminate called without an active exception"


def _launch(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train_fsdp.py"],
        cwd=folder, capture_output=True, text=True, timeout=120,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(folder)},
    )
