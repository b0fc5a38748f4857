"""Data-parallel training under ``torchrun``: the process group and the collectives the trainer uses.

With ``WORLD_SIZE`` > 1 the process group is initialised from the environment (NCCL on GPU, gloo on
CPU); every helper is a no-op (or the identity) in a single process unless it says otherwise.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "DistInfo",
    "all_gather_object",
    "all_reduce_mean",
    "all_reduce_sum",
    "barrier",
    "init_distributed",
    "release_group",
]


@dataclass
class DistInfo:
    """This process's place in the run: rank, world size, local rank, whether it created the group."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def active(self) -> bool:
        """More than one process."""
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0 (the one that logs and writes checkpoints)."""
        return self.rank == 0


def init_distributed(device_kind: str) -> DistInfo:
    """Joins (or creates) the process group described by the torchrun environment."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        if device_kind == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
        owns = True
    return DistInfo(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local, owns_group=owns)


def barrier(info: DistInfo) -> None:
    """Waits for every process."""
    if info.active:
        import torch.distributed as dist

        dist.barrier()


def all_reduce_mean(t: Tensor, info: DistInfo) -> Tensor:
    """The mean of ``t`` over the processes (a new tensor; only valid when ``info.active``)."""
    import torch.distributed as dist

    t = t.clone()
    dist.all_reduce(t)
    return t / info.world


def all_reduce_sum(t: Tensor, info: DistInfo) -> Tensor:
    """The sum of ``t`` over the processes (``t`` itself in one process)."""
    if not info.active:
        return t
    import torch.distributed as dist

    t = t.clone()
    dist.all_reduce(t)
    return t


def all_gather_object(obj: Any, info: DistInfo) -> list[Any]:
    """Every process's ``obj``, in rank order (only valid when ``info.active``)."""
    import torch.distributed as dist

    out: list[Any] = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def release_group(info: DistInfo) -> None:
    """Destroys the process group if this process created it (after a last barrier)."""
    import torch.distributed as dist

    if info.owns_group and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.barrier()
        dist.destroy_process_group()
