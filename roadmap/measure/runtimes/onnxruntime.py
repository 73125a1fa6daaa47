"""ONNX: the serialization (torch's TorchScript-based exporter) and ONNX Runtime sessions.

The exporter is the TorchScript-based one (``dynamo=False``): the ``torch.export`` based one
needs the ``onnxscript`` package, which is not a dependency. The batch axis is dynamic.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roadmap.errors import RoadmapError
from roadmap.measure.runtimes import (
    INPUT_NAME,
    OUTPUT_NAME,
    Runner,
    Runtime,
    Target,
    register_runtime,
    requires,
)
from roadmap.util import files

if TYPE_CHECKING:
    import torch
    from torch import nn

# Opset 17 has every op these networks use (HardSwish since 14) and is read by every current
# runtime, mobile ones included.
ONNX_OPSET = 17


def onnx_bytes(model: nn.Module, x: torch.Tensor) -> bytes:
    """The ONNX serialization of ``model`` traced on ``x``, with a dynamic batch axis."""
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the legacy exporter announces its own deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model.eval(),
            (x,),
            buffer,
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )
    return buffer.getvalue()


def session(source: Path | bytes, threads: int, device: str = "cpu") -> Any:
    """An ONNX Runtime session on ``threads`` intra-op threads whose workers do not spin.

    Every session has its own worker threads, which spin for a while after each run waiting
    for more work. Interleaving several sessions, each one's spinning workers take the cores
    the next one needs: four networks measured that way on 2 threads took 15-29 ms with IQRs
    of 6-10 ms; without spinning 5.5-10 ms with IQRs under 0.6 ms (RepViT-M0.9 alone: 7.8 ms
    spinning, 9.4 ms not). Spinning is off, so that every row of a table is measured alike.
    """
    import onnxruntime as ort

    provider = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
    if provider not in ort.get_available_providers():
        raise RoadmapError(f"onnxruntime here has no {provider}; install onnxruntime-gpu")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # the same count torch uses, so backends compare
    options.inter_op_num_threads = 1  # one model, one stream of work
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    data = str(source) if isinstance(source, Path) else source
    return ort.InferenceSession(data, options, providers=[provider])


def run_onnx(source: Path | bytes, x: torch.Tensor, threads: int | None = None) -> torch.Tensor:
    """Run an ONNX model with ONNX Runtime (CPU) on ``x``."""
    import torch

    (logits,) = session(source, threads or torch.get_num_threads()).run(
        None, {INPUT_NAME: x.numpy()}
    )
    return torch.from_numpy(logits)


def version() -> str:
    import onnxruntime as ort

    return ort.__version__


def time_session(model: nn.Module, x: torch.Tensor, target: Target) -> Callable[[], object]:
    """One session on the serialized model, fed the same input every iteration."""
    run = session(onnx_bytes(model, x), target.threads, target.device)
    feed = {INPUT_NAME: x.numpy()}
    return lambda: run.run(None, feed)


def export(model: nn.Module, example: torch.Tensor, out: Path, int8: bool) -> tuple[Runner, str]:
    """Write the ``.onnx`` file; run it back with ONNX Runtime."""
    files.write_bytes(out, onnx_bytes(model, example))
    return lambda x: run_onnx(out, x), f"onnxruntime {version()}"


ONNXRUNTIME = register_runtime(
    Runtime(
        "onnxruntime",
        "ONNX Runtime on the ONNX export (idle workers do not spin)",
        timer=time_session,
        exporter=export,
        format="onnx",
        suffix=".onnx",
        devices=("cpu", "cuda"),
        installed=requires("onnxruntime", "ONNX Runtime", "pip install onnxruntime"),
        conditions=lambda: {"onnxruntime_version": version(), "onnxruntime_workers_spin": False},
    )
)
