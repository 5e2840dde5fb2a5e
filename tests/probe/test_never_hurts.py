"""The probe is never the reason a run dies: I/O failures are one warning, a kill -9 leaves a readable run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import torch

from diagnose.probe import Probe, ProbeWarning
from diagnose.probe import files as probe_files
from diagnose.readers.rundir import read
from probe_helpers import tiny_problem

REPO = Path(__file__).resolve().parents[2]


def train(probe, steps=25):
    model, x, y = tiny_problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(steps):
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        probe.step(loss, opt)
        opt.step()
        opt.zero_grad()
        probe.eval("valid", loss=loss.detach())
    return loss.item()


def probe_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, ProbeWarning)]


def run_with_fault(tmp_path, fault) -> list[str]:
    """Train 25 steps with ``fault(folder)`` applied after construction; the loop must finish."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Probe(tmp_path, "s", "r", flush_every=5) as probe:
            fault(probe.folder)
            final_loss = train(probe)
    assert final_loss < 1.5  # training really ran to the end
    return probe_warnings(caught)


def test_disk_full_is_one_warning(tmp_path):
    def disk_full(folder):
        (folder / "steps.csv").unlink()
        (folder / "steps.csv").symlink_to("/dev/full")  # every write fails with ENOSPC

    messages = run_with_fault(tmp_path, disk_full)
    assert len(messages) == 1 and "No space left on device" in messages[0]


def test_permission_denied_is_one_warning(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(args[0]))

    # Tests run as root, where chmod does not refuse: refuse in the probe's file layer instead.
    messages = run_with_fault(tmp_path, lambda folder: monkeypatch.setattr(probe_files.os, "open", refuse))
    assert len(messages) == 1 and "Permission denied" in messages[0]


def test_deleted_log_dir_is_one_warning(tmp_path):
    messages = run_with_fault(tmp_path, shutil.rmtree)
    assert len(messages) == 1 and "cannot write" in messages[0]


def test_unwritable_log_root_at_construction_is_one_warning(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Probe(blocker, "s", "r", flush_every=5) as probe:
            train(probe)
    assert len(probe_warnings(caught)) == 1


def test_internal_errors_and_callback_errors_never_reach_the_loop(tmp_path):
    def broken_callback(alert):
        raise RuntimeError("user callback bug")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Probe(tmp_path, "s", "odd", flush_every=2, on_alert=broken_callback) as probe:
            model, x, y = tiny_problem()
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            probe.step(torch.tensor(float("nan")), opt)  # fires an alert whose callback raises
            probe.step(torch.tensor(1.0), opt)
            probe.step(torch.tensor(1.0), opt)
            probe.step(object(), opt)  # not a loss: the probe stops logging, training goes on
            probe.step(torch.tensor(1.0), opt)
            probe.eval("valid", loss=object())
    messages = probe_warnings(caught)
    assert any("on_alert raised" in m for m in messages)
    assert any("internal error" in m and "must be a tensor or a number" in m for m in messages)
    assert len(messages) == 2, messages
    assert read(tmp_path / "s" / "odd", "s").steps["loss"].tolist()[1:] == [1.0, 1.0]


def test_writer_falling_behind_drops_windows_with_one_warning(tmp_path, monkeypatch):
    slow = probe_files.CsvAppender.append

    def stalled(self, rows, **options):
        time.sleep(0.05)
        slow(self, rows, **options)

    monkeypatch.setattr(probe_files.CsvAppender, "append", stalled)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Probe(tmp_path, "s", "slow", flush_every=1) as probe:
            for step in range(60):
                probe.step(torch.tensor(1.0))
    messages = probe_warnings(caught)
    assert len(messages) == 1 and "dropped" in messages[0]
    assert 0 < len(read(tmp_path / "s" / "slow", "s").steps) < 60


KILLED_SCRIPT = textwrap.dedent("""
    import sys, time, torch
    from diagnose.probe import Probe
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(32, 8), torch.randn(32, 1)
    probe = Probe(sys.argv[1], "s", "killed", flush_every=10, flush_seconds=1000)
    for step in range(100000):
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        probe.step(loss, opt)
        opt.step(); opt.zero_grad()
        print(step, flush=True)
        time.sleep(0.002)
""")


def test_kill_9_leaves_a_readable_run_missing_at_most_one_window(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(KILLED_SCRIPT)
    child = subprocess.Popen([sys.executable, str(script), str(tmp_path / "logs")], stdout=subprocess.PIPE,
                             text=True, cwd=REPO)
    last = -1
    try:
        for line in child.stdout:
            last = int(line)
            if last >= 57:
                break
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    last = max(last, *(int(line) for line in child.stdout.read().split()), -1)
    run = read(tmp_path / "logs" / "s" / "killed", "s")
    logged = run.steps["step"].tolist()
    assert run.status == "running"
    assert logged == list(range(len(logged)))
    assert last - (logged[-1] if logged else -1) <= 10 + 1  # the open window of 10 steps, and the step being printed
