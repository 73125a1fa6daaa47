"""TorchScript: ``torch.jit.trace`` of the fused model, saved and loaded back."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def trace(model: nn.Module, x: torch.Tensor) -> torch.jit.ScriptModule:
    """``torch.jit.trace`` without its deprecation notice (Core ML's converter takes a trace)."""
    with quiet_jit(), torch.no_grad():  # tracing must happen outside inference mode
        return torch.jit.trace(model, x)


def to_bytes(traced: torch.jit.ScriptModule) -> bytes:
    """The saved form of a traced module."""
    buffer = io.BytesIO()
    with quiet_jit():
        torch.jit.save(traced, buffer)
    return buffer.getvalue()


def load(path: str) -> torch.jit.ScriptModule:
    with quiet_jit():
        return torch.jit.load(path)


@contextmanager
def quiet_jit() -> Iterator[None]:
    """Silence torch.jit's deprecation notices: TorchScript is still what the tools here take."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=FutureWarning)
        yield
