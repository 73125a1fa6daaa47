"""torch itself: eager mode, and ``torch.compile`` (its default mode). Both time the fused
model on the device asked for, in the memory format asked for; neither exports a file."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from roadmap.measure.runtimes import Runtime, Target, register_runtime

if TYPE_CHECKING:
    import torch
    from torch import nn


def time_eager(model: nn.Module, x: torch.Tensor, target: Target) -> Callable[[], object]:
    return lambda: model(x)


def time_compiled(model: nn.Module, x: torch.Tensor, target: Target) -> Callable[[], object]:
    import torch

    compiled = torch.compile(model)
    return lambda: compiled(x)


EAGER = register_runtime(
    Runtime(
        "eager",
        "torch eager mode",
        timer=time_eager,
        in_torch=True,
        devices=("cpu", "cuda"),
    )
)
COMPILE = register_runtime(
    Runtime(
        "compile",
        "torch.compile, default mode (the warm-up compiles)",
        timer=time_compiled,
        in_torch=True,
        devices=("cpu", "cuda"),
        min_warmup=1,
    )
)
