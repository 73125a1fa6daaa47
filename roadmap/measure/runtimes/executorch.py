"""ExecuTorch: the ``.pte`` program (lowered to XNNPACK, the CPU kernels ExecuTorch runs on
Android and iOS phones) and the ExecuTorch runtime that runs it.

ExecuTorch is an optional extra (``pip install -e ".[mobile]"``); without it, every entry point
here says so in one line. Shapes are static: a program takes exactly the example's batch and
resolution, as a phone app would.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from roadmap.errors import RoadmapError
from roadmap.measure.runtimes import Runner, Runtime, Target, register_runtime, requires
from roadmap.util import files
from roadmap.util.stderr_filter import filtered_stderr

if TYPE_CHECKING:
    import torch
    from torch import nn

MOBILE_INSTALL = 'pip install -e ".[mobile]"'
DELEGATE = "XNNPACK"

# What the ExecuTorch runtime writes straight to the process's stderr at load time: cpuinfo's
# probing of ARM-only files, and the thread-pool size we set ourselves (recorded as a condition).
_RUNTIME_CHATTER = re.compile(r"\[(cpuinfo_utils|threadpool)\.cpp:\d+\]")


# How int8 programs are quantized, for records and tables.
INT8 = "int8 (PT2E, XNNPACK quantizer: per-channel symmetric weights, per-tensor activations)"
CALIBRATION_BATCHES = 8  # random images when no data is given: enough for speed, not accuracy


def program_bytes(
    model: nn.Module,
    x: torch.Tensor,
    *,
    int8: bool = False,
    calibration: Iterable[torch.Tensor] | None = None,
) -> bytes:
    """The ``.pte`` program of ``model`` for inputs shaped like ``x``, lowered to XNNPACK.

    ``torch.export`` captures the graph, ``to_edge_transform_and_lower`` hands every op the
    XNNPACK partitioner accepts to that delegate (ops it does not take run on ExecuTorch's
    portable kernels), and ``to_executorch`` serializes the program. With ``int8`` the graph is
    quantized first (:func:`quantize_int8`), the form phones run.
    """
    import torch

    with quiet():
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        if int8:
            model = quantize_int8(model, x, calibration)
        with torch.no_grad():
            program = torch.export.export(model.eval() if not int8 else model, (x,))
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        return lowered.to_executorch().buffer


def quantize_int8(
    model: nn.Module, x: torch.Tensor, calibration: Iterable[torch.Tensor] | None = None
) -> nn.Module:
    """Post-training int8 quantization through PT2E with ExecuTorch's XNNPACK quantizer.

    The exported graph gets observers (per-channel symmetric int8 weights, per-tensor int8
    activations), sees the calibration batches (shaped like ``x``; without them
    ``CALIBRATION_BATCHES`` random images, which is enough to time the program but says
    nothing about its accuracy), and is converted to quantize / dequantize pairs around int8
    kernels, which XNNPACK then runs.
    """
    import torch

    with quiet():
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        quantizer = XNNPACKQuantizer().set_global(
            get_symmetric_quantization_config(is_per_channel=True)
        )
        with torch.no_grad():
            graph = torch.export.export(model.eval(), (x,)).module()
            prepared = prepare_pt2e(graph, quantizer)
            generator = torch.Generator().manual_seed(0)
            batches = calibration or (
                torch.randn(x.shape, generator=generator) for _ in range(CALIBRATION_BATCHES)
            )
            for batch in batches:
                prepared(batch)
            return convert_pt2e(prepared)


def load(source: Path | bytes, threads: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Load a ``.pte`` program with the ExecuTorch runtime; return its forward on one tensor.

    The runtime's thread pool is process-wide and is read when a program is loaded, so it is
    sized here, before loading (resizing it afterwards slows a loaded program down ~2x).
    """
    with quiet():
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        portable_lib._unsafe_reset_threadpool(threads)
        program = Runtime.get().load_program(source if isinstance(source, bytes) else str(source))
        method = program.load_method("forward")

    def forward(x: torch.Tensor) -> torch.Tensor:
        _ = program  # the method runs out of its program's memory: keep it alive
        return method.execute([x.contiguous()])[0]

    return forward


def load_batched(
    source: Path | bytes, threads: int, batch: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """:func:`load`, for any number of images: a program takes exactly ``batch`` of them, so
    they go through in pieces, the last one padded with zeros (its padding rows dropped)."""
    forward = load(source, threads)

    import torch

    def run(x: torch.Tensor) -> torch.Tensor:
        pieces = []
        for chunk in x.split(batch):
            n = chunk.shape[0]
            if n < batch:
                chunk = torch.cat([chunk, chunk.new_zeros(batch - n, *chunk.shape[1:])])
            pieces.append(forward(chunk)[:n])
        return torch.cat(pieces)

    return run


def version() -> str:
    """The installed ExecuTorch's version (a clear error when it is missing)."""
    with quiet():
        from executorch.version import __version__
    return __version__


@contextmanager
def quiet() -> Iterator[None]:
    """Import and load ExecuTorch without its noise, failing in one line when it is missing.

    Importing it makes torch log a deprecation about an enum that torchao registers; the
    runtime prints cpuinfo probes on stderr from C++. Both are dropped; anything else the native
    code writes to stderr is passed on.
    """
    pytree_log = logging.getLogger("torch.utils._pytree")
    level = pytree_log.level
    pytree_log.setLevel(logging.ERROR)
    try:
        with filtered_stderr(_RUNTIME_CHATTER):
            yield
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] != "executorch":
            raise
        raise RoadmapError(f"ExecuTorch is not installed: {MOBILE_INSTALL}") from None
    finally:
        pytree_log.setLevel(level)


def time_program(model: nn.Module, x: torch.Tensor, target: Target) -> Callable[[], object]:
    """The program lowered in memory and loaded by the ExecuTorch runtime."""
    forward = load(program_bytes(model, x, int8=target.int8), target.threads)
    return lambda: forward(x)


def export(model: nn.Module, example: torch.Tensor, out: Path, int8: bool) -> tuple[Runner, str]:
    """Write the ``.pte`` program (int8: quantized first); run it back in the runtime."""
    import torch

    files.write_bytes(out, program_bytes(model, example, int8=int8))
    run = load_batched(out, torch.get_num_threads(), example.shape[0])
    runtime = f"executorch {version()} runtime, {DELEGATE} delegate"
    return run, runtime + (f", {INT8}" if int8 else "")


EXECUTORCH = register_runtime(
    Runtime(
        "executorch",
        'ExecuTorch with XNNPACK, the phone runtime (pip install -e ".[mobile]")',
        timer=time_program,
        exporter=export,
        format="executorch",
        suffix=".pte",
        int8=True,
        installed=requires("executorch", "ExecuTorch", MOBILE_INSTALL),
        conditions=lambda: {"executorch_version": version(), "delegate": DELEGATE},
    )
)
