"""Export the deploy form (fused) to ONNX, TorchScript, ExecuTorch or Core ML; check it on torch.

Each format is written by its runtime's module (:mod:`roadmap.measure.runtimes`), atomically,
then read back by that runtime and compared with torch before success is reported: ONNX with
ONNX Runtime, TorchScript with ``torch.jit.load``, a ``.pte`` program with the ExecuTorch
runtime. Core ML cannot run here (it needs macOS), so its package is checked by structure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from roadmap.arch.reparam import fuse
from roadmap.errors import RoadmapError
from roadmap.measure.runtimes import coreml, executorch, onnxruntime, torchscript
from roadmap.util import files

FORMATS = ("onnx", "torchscript", "executorch", "coreml")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "executorch": ".pte", "coreml": ".mlpackage"}
# The check compares logits relative to their spread over the example batch (max - min): fp32
# sums taken in another order by another runtime differ by ~3e-7 of it (measured on every step,
# ONNX Runtime, 224 px), an export that outputs zeros by ~0.5, a 1 % scale error by ~1e-2.
TOLERANCE = 1e-4
# Logits that barely vary with the input cannot tell a right export from a wrong one.
MIN_SPREAD = 1e-6


@dataclass(frozen=True)
class ExportResult:
    """What was written.

    Attributes:
        path: the file (or ``.mlpackage`` directory) written.
        format: "onnx", "torchscript", "executorch" or "coreml".
        input_shape: the example input's shape (the ONNX batch axis is dynamic).
        max_abs_diff: largest |exported - torch| logit difference, None when not checked.
        logit_scale: the spread (max - min) of torch's logits over the example batch, the
            yardstick the difference is measured against.
        checked_with: what ran the exported model for the check, or why it was not run.
    """

    path: Path
    format: str
    input_shape: tuple[int, ...]
    max_abs_diff: float | None
    logit_scale: float
    checked_with: str


def export_model(
    model: nn.Module, fmt: str, out: Path, *, img_size: int = 224, batch: int = 1
) -> ExportResult:
    """Fuse ``model`` and write its deploy form to ``out`` in format ``fmt``; check the result.

    Args:
        model: a roadmap network (training or deploy form; it is not modified).
        fmt: "onnx", "torchscript", "executorch" or "coreml".
        out: destination path (Core ML needs a ``.mlpackage`` suffix).
        img_size: square input resolution of the example input.
        batch: batch size of the example input.

    Raises:
        RoadmapError: unknown format, unwritable path, missing executorch or coremltools, or an
            export whose outputs disagree with torch.
    """
    if fmt not in FORMATS:
        raise RoadmapError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "coreml" and out.suffix != ".mlpackage":
        raise RoadmapError(f"Core ML ML programs are saved as .mlpackage, not {out.name!r}")
    deploy = fuse(model)
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(batch, 3, img_size, img_size, generator=generator)
    check = torch.cat([example, torch.randn(2, *example.shape[1:], generator=generator)])
    with torch.no_grad():
        expected = deploy(check)  # a few images, so that the logits vary
    _prepare(out)
    exporter = {
        "onnx": _onnx,
        "torchscript": _torchscript,
        "executorch": _executorch,
        "coreml": _coreml,
    }[fmt]
    run, checked_with = exporter(deploy, example, out)
    got = None if run is None else run(check)
    result = _result(out, fmt, example, expected, got, checked_with)
    if result.max_abs_diff is not None:
        _check(result, fmt)
    return result


def _check(result: ExportResult, fmt: str) -> None:
    """The exported model must reproduce torch's logits, relative to how much they vary."""
    if result.logit_scale < MIN_SPREAD:
        raise RoadmapError(
            f"cannot check the {fmt} export: the model's logits do not vary with the input "
            f"(spread {result.logit_scale:.1e}); are its weights all zero?"
        )
    if result.max_abs_diff > TOLERANCE * result.logit_scale:
        raise RoadmapError(
            f"the exported {fmt} model disagrees with torch (max abs diff "
            f"{result.max_abs_diff:.2e} against a logit spread of {result.logit_scale:.3g}); "
            "please report"
        )


def _result(
    out: Path,
    fmt: str,
    x: torch.Tensor,
    expected: torch.Tensor,
    got: torch.Tensor | None,
    checked_with: str,
) -> ExportResult:
    diff = None if got is None else float((got - expected).abs().max())
    spread = float(expected.max() - expected.min())
    return ExportResult(out, fmt, tuple(x.shape), diff, spread, checked_with)


def _prepare(out: Path) -> None:
    files.make_dirs(out.parent)  # fail before the (slow) export, not after


# Each exporter writes ``out`` from the model traced on ``example`` and returns a function that
# runs the written file on a batch (None when it cannot run here), and what runs it.
Runner = Callable[[torch.Tensor], torch.Tensor] | None


def _onnx(model: nn.Module, example: torch.Tensor, out: Path) -> tuple[Runner, str]:
    _write(out, onnxruntime.onnx_bytes(model, example))
    return lambda x: onnxruntime.run_onnx(out, x), f"onnxruntime {onnxruntime.version()}"


def _torchscript(model: nn.Module, example: torch.Tensor, out: Path) -> tuple[Runner, str]:
    _write(out, torchscript.to_bytes(torchscript.trace(model, example)))
    loaded = torchscript.load(str(out))
    return torch.no_grad()(loaded), f"torch.jit.load (torch {torch.__version__})"


def _executorch(model: nn.Module, example: torch.Tensor, out: Path) -> tuple[Runner, str]:
    _write(out, executorch.program_bytes(model, example))
    forward = executorch.load(out, torch.get_num_threads())
    batch = example.shape[0]

    def run(x: torch.Tensor) -> torch.Tensor:
        """The program takes exactly ``batch`` images: run the check batch in pieces."""
        pieces = []
        for chunk in x.split(batch):
            n = chunk.shape[0]
            if n < batch:  # pad the last piece, keep only its real rows
                chunk = torch.cat([chunk, chunk.new_zeros(batch - n, *chunk.shape[1:])])
            pieces.append(forward(chunk)[:n])
        return torch.cat(pieces)

    return run, f"executorch {executorch.version()} runtime, {executorch.DELEGATE} delegate"


def _coreml(model: nn.Module, example: torch.Tensor, out: Path) -> tuple[Runner, str]:
    coreml.convert(model, example, out)
    structure = coreml.coreml_structure(out)
    coreml.check_coreml_structure(structure, model, tuple(example.shape))
    return None, (
        f"structure checked: {structure.describe()}; not run: Core ML prediction needs macOS "
        "(time it with Xcode's performance report)"
    )


def _write(out: Path, data: bytes) -> None:
    """Write atomically: a reader never sees half a model."""
    files.write_bytes(out, data)
