"""Joining and leaving the process group of a ``torchrun`` job (DistributedDataParallel training)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the process group when launched by ``torchrun``; return (rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def shutdown_distributed() -> None:
    """Leave the process group, if this process joined one (end of a ``torchrun`` job).

    Without it gloo's threads can still be running while the interpreter
    exits, which now and then aborts a rank ("terminate called without an
    active exception") after all its work is done.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
