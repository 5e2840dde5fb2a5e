"""DDP, FSDP2 and HSDP (DTensor) on 2 CPU processes with gloo: the logged norm is the global one, one collective per flush."""

from __future__ import annotations

import json
import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from diagnose.readers.rundir import read

import distributed_worker

MODES = ["ddp", "fsdp2", "fsdp2-clip", "hsdp"]


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this build")
    folder = tmp_path_factory.mktemp("dist")
    mp.spawn(distributed_worker.main, args=(2, str(folder / "store"), str(folder), MODES), nprocs=2, join=True)
    return folder


@pytest.mark.parametrize("mode", MODES)
def test_global_norm_matches_the_unsharded_model(logdir, mode):
    summary = json.loads((logdir / f"{mode}.json").read_text())
    run = read(logdir / "rank0" / "dist" / mode, "dist")
    assert run.status == "finished"
    assert run.steps["step"].tolist() == list(range(distributed_worker.STEPS))
    logged = run.steps["grad_norm"].to_numpy()
    reference = np.array(summary["reference"])
    assert np.max(np.abs(logged - reference) / reference) <= 1e-5
    # The loss is the mean over ranks: the loss of the global batch.
    np.testing.assert_allclose(run.steps["loss"], summary["reference_loss"], rtol=1e-5)
    # One all-reduce per flush (at steps 4 and 8), not one per step.
    assert summary["collectives_during_steps"] == distributed_worker.STEPS // distributed_worker.FLUSH_EVERY - 1


def test_naive_local_norm_under_fsdp2_would_be_wrong(logdir):
    """Guards the test above: the norm over one rank's shards is far from the global one."""
    summary = json.loads((logdir / "fsdp2.json").read_text())
    naive, reference = np.array(summary["naive"]), np.array(summary["reference"])
    assert np.all(np.abs(naive - reference) / reference > 0.05)


def test_fsdp1_sharded_flat_parameters(tmp_path):
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus < 2:
        pytest.skip(f"FSDP1 (FullyShardedDataParallel) refuses to start without an accelerator; "
                    f"this test needs 2 GPUs, found {gpus}")
    mp.spawn(distributed_worker.main_fsdp1, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    reference = np.array(json.loads((tmp_path / "fsdp1.json").read_text())["reference"])
    logged = read(tmp_path / "rank0" / "dist" / "fsdp1", "dist").steps["grad_norm"].to_numpy()
    assert np.max(np.abs(logged - reference) / reference) <= 1e-5
