"""Rounds under `torch.distributed`: equal shards, one agreement before generate, a generate all ranks join.

Under FSDP (1 and 2) and DeepSpeed ZeRO-3 every forward pass is a collective: a rank that skips a round,
or leaves `generate` early, leaves the others waiting forever. So every rank prepares its shard, one
all-reduce decides whether the round goes ahead on all of them, and `sharded_generation` makes the
model's forward safe to call from a callback (see docs/distributed.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
import torch.distributed as dist


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the world size; (0, 1) when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def equal_shards(items: list[Any], world: int) -> list[list[Any]]:
    """`world` shards of equal length, the last padded with the last item.

    Under FSDP and ZeRO-3 every rank must run the same number of generate calls; a rank that runs
    out early leaves the others waiting in a collective forever.
    """
    per_rank = math.ceil(len(items) / world)
    padded = items + [items[-1]] * (per_rank * world - len(items))
    return [padded[rank * per_rank : (rank + 1) * per_rank] for rank in range(world)]


def all_ranks_ok(ok: bool) -> bool:
    """True on every rank when `ok` is true on every rank: one small all-reduce (MIN)."""
    if rank_and_world()[1] == 1:
        return ok
    flag = torch.tensor([1 if ok else 0], dtype=torch.int32, device=collective_device())
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def gather_to_main(local: Any, world: int) -> list[Any] | None:
    """Every rank's object on rank 0, in rank order; None on the other ranks."""
    if world == 1:
        return [local]
    gathered = [None] * world if dist.get_rank() == 0 else None
    dist.gather_object(local, gathered, dst=0)
    return gathered


def broadcast_from_main(value: Any, world: int) -> Any:
    """Rank 0's value on every rank, so all ranks act on the same outcome."""
    if world == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def collective_device() -> torch.device:
    """Where a tensor for the default process group must live: the current GPU under NCCL, else the CPU."""
    if "nccl" in str(dist.get_backend()).lower() and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def sharding(model: torch.nn.Module) -> str | None:
    """How the model's parameters are sharded across ranks: "fsdp1", "fsdp2", "zero3", or None."""
    from torch.distributed.fsdp import FullyShardedDataParallel

    modules = list(model.modules())
    if any(isinstance(module, FullyShardedDataParallel) for module in modules):
        return "fsdp1"
    if any(isinstance(module, _fsdp2_module_class()) for module in modules):
        return "fsdp2"
    if any(hasattr(parameter, "ds_id") for parameter in model.parameters()):
        return "zero3"
    return None


@contextmanager
def sharded_generation(model: torch.nn.Module) -> Iterator[dict[str, Any]]:
    """`generate` options that keep sharded ranks in lock-step, with FSDP1's root parameters summoned.

    FSDP1's root holds its flat parameters sharded between forward passes; generate calls the inner
    module, which never gathers them, so they are summoned for the round (not written back). Under
    any sharding with more than one rank, `synced_gpus` keeps a rank whose answers ended stepping the
    forward passes the others still need.
    """
    kind = sharding(model)
    synced = kind is not None and rank_and_world()[1] > 1
    with _summon_root(model) if kind == "fsdp1" else nullcontext():
        yield {"synced_gpus": synced}


def _summon_root(model: torch.nn.Module) -> Any:
    """FSDP1's outermost unit's parameters in full; nested units gather their own in their forward."""
    from torch.distributed.fsdp import FullyShardedDataParallel

    root = next(module for module in model.modules() if isinstance(module, FullyShardedDataParallel))
    return FullyShardedDataParallel.summon_full_params(root, recurse=False, writeback=False)


def _fsdp2_module_class() -> type:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch < 2.6
        from torch.distributed._composable.fsdp import FSDPModule
    return FSDPModule
