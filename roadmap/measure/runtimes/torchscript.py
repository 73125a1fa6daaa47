"""TorchScript: ``torch.jit.trace`` of the fused model, saved and loaded back."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from roadmap.measure.runtimes import Runner, Runtime, Target, register_runtime
from roadmap.util import files

if TYPE_CHECKING:
    import torch
    from torch import nn


def trace(model: nn.Module, x: torch.Tensor) -> torch.jit.ScriptModule:
    """``torch.jit.trace`` without its deprecation notice (Core ML's converter takes a trace)."""
    import torch

    with quiet_jit(), torch.no_grad():  # tracing must happen outside inference mode
        return torch.jit.trace(model, x)


def to_bytes(traced: torch.jit.ScriptModule) -> bytes:
    """The saved form of a traced module."""
    import torch

    buffer = io.BytesIO()
    with quiet_jit():
        torch.jit.save(traced, buffer)
    return buffer.getvalue()


def load(path: str) -> torch.jit.ScriptModule:
    import torch

    with quiet_jit():
        return torch.jit.load(path)


@contextmanager
def quiet_jit() -> Iterator[None]:
    """Silence torch.jit's deprecation notices: TorchScript is still what the tools here take."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=FutureWarning)
        yield


def time_traced(model: nn.Module, x: torch.Tensor, target: Target) -> Callable[[], object]:
    traced = trace(model, x)
    return lambda: traced(x)


def export(model: nn.Module, example: torch.Tensor, out: Path, int8: bool) -> tuple[Runner, str]:
    """Write the trace; run it back with ``torch.jit.load``."""
    import torch

    files.write_bytes(out, to_bytes(trace(model, example)))
    return torch.no_grad()(load(str(out))), f"torch.jit.load (torch {torch.__version__})"


TORCHSCRIPT = register_runtime(
    Runtime(
        "torchscript",
        "torch.jit.trace of the fused model",
        timer=time_traced,
        exporter=export,
        format="torchscript",
        suffix=".pt",
        in_torch=True,
        devices=("cpu", "cuda"),
    )
)
