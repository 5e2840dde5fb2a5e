"""Runs in each of 2 gloo processes: DDP and FSDP2 training with a probe, and the reference norm of the unsharded model.

Each step, an unsharded copy of the model gets the current full parameters and
the global batch; ``clip_grad_norm_`` on it is the reference. Rank 0 writes
what it measured to ``<logdir>/<mode>.json`` for the test to compare with the
run directory.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

from diagnose.probe import Probe

STEPS = 12
FLUSH_EVERY = 4


def model_and_data(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 10), torch.nn.Tanh(), torch.nn.Linear(10, 10), torch.nn.Tanh(), torch.nn.Linear(10, 3)
    )
    x, y = torch.randn(32, 6), torch.randn(32, 3)
    return model, x, y


def full(tensor):
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def run(rank: int, world: int, logdir: Path, mode: str) -> None:
    model, x, y = model_and_data()
    reference_model = copy.deepcopy(model)
    if mode == "ddp":
        wrapped = DistributedDataParallel(model)
    else:
        # hsdp: replicated over a 2-rank mesh dimension, "sharded" over a 1-rank one, so every
        # rank holds DTensor gradients in full: the probe must not count them twice.
        mesh = init_device_mesh("cpu", (world, 1), mesh_dim_names=("replicate", "shard")) if mode == "hsdp" else None
        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                fully_shard(layer, mesh=mesh)
        wrapped = fully_shard(model, mesh=mesh)
    opt = torch.optim.SGD(wrapped.parameters(), lr=0.5, momentum=0.9)
    local = slice(rank * len(x) // world, (rank + 1) * len(x) // world)

    collectives = {"during_step": 0, "counting": False}
    all_reduce = dist.all_reduce

    def counted(*args, **kwargs):
        collectives["during_step"] += collectives["counting"]
        return all_reduce(*args, **kwargs)

    dist.all_reduce = counted
    reference, reference_loss, naive = [], [], []
    # Each rank gets its own log root, so that the test sees that only rank 0 wrote.
    with Probe(logdir / f"rank{rank}", "dist", mode, flush_every=FLUSH_EVERY) as probe:
        for _ in range(STEPS):
            with torch.no_grad():
                for mine, theirs in zip(reference_model.parameters(), wrapped.parameters()):
                    mine.copy_(full(theirs))
            ref_loss = torch.nn.functional.mse_loss(reference_model(x), y)
            ref_loss.backward()
            reference.append(torch.nn.utils.clip_grad_norm_(reference_model.parameters(), 1e9).item())
            reference_loss.append(ref_loss.item())
            reference_model.zero_grad()

            loss = torch.nn.functional.mse_loss(wrapped(x[local]), y[local])
            loss.backward()
            if mode == "hsdp":
                assert all(isinstance(p.grad, DTensor) and p.grad.placements[0].is_replicate()
                           for p in wrapped.parameters())
            grads = [p.grad.to_local() if isinstance(p.grad, DTensor) else p.grad for p in wrapped.parameters()]
            naive.append(torch.nn.utils.get_total_norm(grads).item())
            if mode == "fsdp2-clip":
                norm = torch.nn.utils.clip_grad_norm_(wrapped.parameters(), 0.5)
                collectives["counting"] = True
                probe.step(loss, opt, grad_norm=norm, clip_norm=0.5)
            else:
                collectives["counting"] = True
                probe.step(loss, opt)
            collectives["counting"] = False
            opt.step()
            opt.zero_grad()
    dist.all_reduce = all_reduce
    if rank == 0:
        summary = {"reference": reference, "reference_loss": reference_loss, "naive": naive,
                   "collectives_during_steps": collectives["during_step"]}
        (logdir / f"{mode}.json").write_text(json.dumps(summary))
    else:
        assert not (logdir / f"rank{rank}").exists(), "only rank 0 writes"


def main(rank: int, world: int, store: str, logdir: str, modes: list[str]) -> None:
    torch.set_num_threads(1)
    # A file rendezvous: no port to find free (and lose to another process) on a shared machine.
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        for mode in modes:
            run(rank, world, Path(logdir), mode)
            dist.barrier()
    finally:
        dist.destroy_process_group()


def main_fsdp1(rank: int, world: int, store: str, logdir: str) -> None:
    """FSDP1 (FullyShardedDataParallel, FULL_SHARD) on ``world`` GPUs with NCCL."""
    from torch.distributed.fsdp import FullyShardedDataParallel

    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        model, x, y = model_and_data()
        model, x, y = model.cuda(), x.cuda(), y.cuda()
        reference_model = copy.deepcopy(model)
        wrapped = FullyShardedDataParallel(model)
        opt = torch.optim.SGD(wrapped.parameters(), lr=0.5, momentum=0.9)
        local = slice(rank * len(x) // world, (rank + 1) * len(x) // world)
        reference = []
        with Probe(Path(logdir) / f"rank{rank}", "dist", "fsdp1", model=wrapped, flush_every=FLUSH_EVERY) as probe:
            for _ in range(STEPS):
                with FullyShardedDataParallel.summon_full_params(wrapped), torch.no_grad():
                    for mine, theirs in zip(reference_model.parameters(), wrapped.module.parameters()):
                        mine.copy_(theirs)
                torch.nn.functional.mse_loss(reference_model(x), y).backward()
                reference.append(torch.nn.utils.clip_grad_norm_(reference_model.parameters(), 1e9).item())
                reference_model.zero_grad()
                torch.nn.functional.mse_loss(wrapped(x[local]), y[local]).backward()
                probe.step(torch.nn.functional.mse_loss(wrapped(x[local]), y[local]).detach(), opt)
                opt.step()
                opt.zero_grad()
        if rank == 0:
            (Path(logdir) / "fsdp1.json").write_text(json.dumps({"reference": reference}))
    finally:
        dist.destroy_process_group()
