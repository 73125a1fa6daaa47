"""Process-group plumbing for ``torchrun --nproc_per_node=N -m roadmap train …``.

Without torchrun's environment variables everything here is a no-op for a single process, so
the training loop reads the same on a laptop and on eight GPUs. Only rank 0 writes files and
draws progress bars.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from roadmap.errors import RoadmapError


@dataclass(frozen=True)
class Processes:
    """Where this process stands among the ones training together.

    Attributes:
        rank: this process's index (0 is the primary, the only one that writes).
        world: number of processes.
        device: the device this process trains on.
    """

    rank: int
    world: int
    device: torch.device

    @property
    def primary(self) -> bool:
        """Whether this process does the I/O."""
        return self.rank == 0


def start(device: str) -> Processes:
    """Join torchrun's process group if launched by it, and pick this process's device.

    Args:
        device: ``cpu`` or ``cuda`` (each process takes the GPU of its ``LOCAL_RANK``).

    Raises:
        RoadmapError: CUDA was asked for but is not available.
    """
    if device not in ("cpu", "cuda"):
        raise RoadmapError(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise RoadmapError("--device cuda was asked for, but this PyTorch sees no CUDA device")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Processes(0, 1, torch.device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    target = torch.device("cuda", local_rank) if device == "cuda" else torch.device("cpu")
    return Processes(dist.get_rank(), dist.get_world_size(), target)


def stop() -> None:
    """Leave the process group (if there is one)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def sum_across(values: list[float], procs: Processes) -> list[float]:
    """Element-wise sum of a few numbers over all processes."""
    if procs.world == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=procs.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def any_across(flag: bool, procs: Processes) -> bool:
    """Whether any process raised the flag (so all of them stop together)."""
    return sum_across([float(flag)], procs)[0] > 0


def average_batchnorm(model: nn.Module, procs: Processes) -> None:
    """Average BatchNorm running statistics over processes, so that every rank evaluates,
    checkpoints and fuses the same network (timm's ``--dist-bn reduce``)."""
    if procs.world == 1:
        return
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
            for buffer in (module.running_mean, module.running_var):
                dist.all_reduce(buffer)
                buffer /= procs.world


def barrier(procs: Processes) -> None:
    """Wait for every process."""
    if procs.world > 1:
        dist.barrier()


def per_process_batch(global_batch: int, procs: Processes) -> int:
    """Each process's share of the global batch (it must split evenly)."""
    if global_batch % procs.world:
        raise RoadmapError(
            f"the global batch {global_batch} does not split over {procs.world} processes; "
            f"pass a --batch-size that is a multiple of {procs.world}"
        )
    return global_batch // procs.world
