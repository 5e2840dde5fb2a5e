"""The unclipped global gradient norm of one update, measured without a host-device sync.

The norm is kept in two parts so that sharded gradients cost one collective
per flush instead of one per step:

- ``replicated``: the L2 norm of the gradients this rank holds in full
  (a single process, DDP, FSDP ``NO_SHARD``, parameters outside FSDP);
- ``sharded_sumsq``: this rank's share of the sum of squares of sharded
  gradients (FSDP2/DTensor shards, FSDP1 flat parameters). Summed over all
  ranks at flush time, it gives the sharded gradients' sum of squares.

The global norm is ``sqrt(replicated**2 + sum over ranks of sharded_sumsq)``.
A DTensor gradient that is replicated along some mesh dimensions is divided
by that replication factor before the sum, so HSDP and 2-D meshes count
every element once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.amp.grad_scaler import OptState
from torch.distributed.tensor import DTensor
from torch.distributed.tensor.placement_types import Replicate
from torch.nn.utils import get_total_norm

LISTED_MAX = 16  # parameters of a CPU Plan whose per-tensor norms the usual step keeps unstacked


@dataclass
class Norm:
    """One update's gradient norm in parts; tensors stay on the device.

    ``replicated`` may also be a vector whose L2 norm is that part (the
    per-tensor norms of a step), or a tuple of them (0-dim tensors): the
    writer reduces a whole window of them in one op at flush time instead
    of one op per step.
    """

    replicated: torch.Tensor | float | None
    sharded_sumsq: torch.Tensor | float | None


def sharded_params_of(model: torch.nn.Module | None) -> set[int]:
    """Ids of the parameters an FSDP1 root ``model`` shards (empty for anything else).

    FSDP1 keeps no mark on a sharded parameter itself, so the handles are asked,
    as ``FullyShardedDataParallel.clip_grad_norm_`` does.
    """
    handles = getattr(model, "_all_handles", None)
    if not handles:
        return set()
    sharded: set[int] = set()
    for handle in handles:
        if not handle.uses_sharded_strategy:
            continue
        params = handle.flat_param._params if handle._use_orig_params else [handle.flat_param]
        sharded.update(id(p) for p in params)
    return sharded


def grad_norm(params, sharded_ids: set[int] = frozenset(), of=None) -> Norm | None:
    """The parts of the L2 norm of the ``.grad`` of ``params`` (or of ``of(param)``); ``None`` when there is none."""
    plain: list[torch.Tensor] = []
    shards: dict[int, list[torch.Tensor]] = {}
    for param in params:
        grad = param.grad if of is None else of(param)
        if grad is None:
            continue
        # `type(...) is Tensor` first: isinstance against DTensor costs ~0.4 us a parameter.
        if type(grad) is not torch.Tensor and isinstance(grad, DTensor):
            if any(p.is_partial() for p in grad.placements):
                # Pending reductions are rare on grads; resolve them (a collective) to stay exact.
                grad = grad.redistribute(
                    grad.device_mesh, [Replicate() if p.is_partial() else p for p in grad.placements]
                )
            factor = math.prod(
                grad.device_mesh.size(dim) for dim, p in enumerate(grad.placements) if p.is_replicate()
            )
            shards.setdefault(factor, []).append(grad.to_local())
        elif sharded_ids and id(param) in sharded_ids:
            shards.setdefault(1, []).append(grad)
        else:
            plain.append(grad)
    if not plain and not shards:
        return None
    replicated = total_norm(plain) if plain else None
    sharded_sumsq = None
    for factor, locals_ in shards.items():
        part = total_norm(locals_).square()
        if factor != 1:
            part = part / factor
        sharded_sumsq = part if sharded_sumsq is None else sharded_sumsq + part
    return Norm(replicated, sharded_sumsq)


def total_norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of ``tensors`` as one vector: ``get_total_norm``'s math, with its fused kernel on any device.

    The per-tensor norms come from one ``_foreach_norm`` call, also on CPU, where
    ``get_total_norm`` loops in Python; tensors spread over several devices go
    to ``get_total_norm``, which groups them.
    """
    try:
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))
    except RuntimeError:
        return get_total_norm(tensors)


def given_norm(value) -> Norm:
    """A norm the user computed (e.g. the return value of ``clip_grad_norm_``)."""
    if isinstance(value, DTensor):
        if any(p.is_partial() for p in value.placements):
            # clip_grad_norm_ over DTensors returns a partial norm: its local value is this rank's norm.
            return Norm(None, value.to_local().detach().square())
        return Norm(value.to_local().detach(), None)
    if isinstance(value, torch.Tensor):
        return Norm(value.detach(), None)
    return Norm(float(value), None)


def unscale(norm: Norm, scaler, optimizer) -> Norm:
    """The norm of the unscaled gradients, when ``scaler`` has not unscaled ``optimizer``'s grads yet."""
    if scaler is None or not scaler.is_enabled() or getattr(scaler, "_scale", None) is None:
        return norm
    state = scaler._per_optimizer_states.get(id(optimizer)) if optimizer is not None else None
    if state is not None and state["stage"] is OptState.UNSCALED:
        return norm
    scale = scaler._scale
    replicated = norm.replicated / scale if norm.replicated is not None else None
    sharded = norm.sharded_sumsq / scale.square() if norm.sharded_sumsq is not None else None
    return Norm(replicated, sharded)


class Plan:
    """One optimizer's parameters sorted once by how their gradients are summed, for a cheap ``measure`` per step.

    When every parameter is plain (a single process, DDP), the gradients go
    straight to one fused norm; with DTensor or FSDP1-sharded parameters
    each step takes the general path of ``grad_norm``. Valid while ``fits``:
    the same optimizer and groups (``add_param_group`` grows the list of
    groups, ``load_state_dict`` replaces it: either makes a new plan).
    """

    def __init__(self, optimizer, sharded_ids: set[int]):
        self.optimizer = optimizer
        self.groups = optimizer.param_groups
        self.count = len(self.groups)
        self.params = params_of(optimizer)
        self.plain = not any(isinstance(p, DTensor) or id(p) in sharded_ids for p in self.params)
        # Whether the gradients, and so the norms, are on the CPU (the flush then need not look at every norm);
        # parameters moved to another device later are seen there by the norms' device.
        self.on_cpu = all(p.is_cpu for p in self.params)
        # The usual step keeps a CPU plan's per-tensor norms as the tuple _foreach_norm returns, stacked once per
        # window: a stack costs ~5 us however small, as much as the fused norm pass of a few tensors. Many are
        # stacked per step: each 0-dim tensor costs the writer ~1 us (stacked and freed on a cold cache), more
        # than the stack saves (the transformer of benchmarks/probe_overhead.py, 26 tensors: -21 us a step,
        # +24 us of writer CPU).
        self.listed = self.on_cpu and 0 < len(self.params) <= LISTED_MAX
        self.sharded_ids = sharded_ids
        first = self.groups[0]
        self.momentum_key = "momentum" if first.get("momentum") is not None else "betas" if "betas" in first else None

    def fits(self, optimizer) -> bool:
        return optimizer is self.optimizer and optimizer.param_groups is self.groups and len(self.groups) == self.count

    def measure(self, norm: bool = True) -> tuple[Norm | torch.Tensor | None, object, object]:
        """This step's gradient norm (None unless ``norm``), lr and momentum.

        The norm is ``grad_norm(params_of(optimizer))``, or in the usual case (every
        parameter plain) a bare tensor: the per-tensor norms, its replicated part.
        """
        if not norm:
            measured = None
        elif self.plain:
            try:
                measured = torch.stack(torch._foreach_norm([p.grad for p in self.params]))
            except (TypeError, RuntimeError):
                # A parameter without a gradient (or none at all), or gradients on several devices.
                measured = grad_norm(self.params, self.sharded_ids)
        else:
            measured = grad_norm(self.params, self.sharded_ids)
        # lr and momentum (SGD ``momentum`` or Adam ``betas[0]``) of the first group, read at every step:
        # schedulers change both (OneCycleLR cycles the momentum).
        group = self.groups[0]
        lr = group.get("lr")
        key = self.momentum_key
        momentum = None if key is None else group[key] if key == "momentum" else group[key][0]
        return measured, by_value(lr), by_value(momentum)


def by_value(hyperparameter):
    """A tensor lr or momentum is changed in place by schedulers: a copy keeps this step's value."""
    return hyperparameter.detach().clone() if isinstance(hyperparameter, torch.Tensor) else hyperparameter


def params_of(optimizer) -> list[torch.nn.Parameter]:
    return [p for group in optimizer.param_groups for p in group["params"]]
