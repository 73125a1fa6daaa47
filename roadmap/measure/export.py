"""Export the deploy form (fused) in any registered runtime's format; check it on torch.

Each format is written by its runtime (:mod:`roadmap.measure.runtimes`), atomically, then read
back by that runtime and compared with torch before success is reported: ONNX with ONNX
Runtime, TorchScript with ``torch.jit.load``, a ``.pte`` program with the ExecuTorch runtime.
Core ML cannot run here (it needs macOS), so its package is checked by structure.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from roadmap.arch.reparam import fuse
from roadmap.errors import RoadmapError
from roadmap.measure import runtimes
from roadmap.util import files

# The check compares logits relative to their spread over the example batch (max - min): fp32
# sums taken in another order by another runtime differ by ~3e-7 of it (measured on every step,
# ONNX Runtime, 224 px), an export that outputs zeros by ~0.5, a 1 % scale error by ~1e-2.
TOLERANCE = 1e-4
# Logits that barely vary with the input cannot tell a right export from a wrong one.
MIN_SPREAD = 1e-6
# An int8 program rounds every weight and activation, so it is not held to float32's
# tolerance but to a signal-to-quantization-noise ratio of its logits (each image's logits
# centred): above 0 dB, the error is smaller than the signal. On the roadmap's steps with
# random weights (calibrated BatchNorm, 64 px) post-training int8 measured 0.9 to 14.1 dB, and
# the same programs with every activation scale x 8 measured -2.4 to -21.4 dB: the bound
# catches a broken quantization, not an accuracy drop (score that on trained weights).
INT8_MIN_SQNR_DB = 0.0


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
        sqnr_db: for an int8 program, its logits' signal-to-quantization-noise ratio against
            torch's float32 logits (dB), else None.
    """

    path: Path
    format: str
    input_shape: tuple[int, ...]
    max_abs_diff: float | None
    logit_scale: float
    checked_with: str
    sqnr_db: float | None = None


def sqnr_db(expected: torch.Tensor, got: torch.Tensor) -> float:
    """10 log10(signal / error energy) of logits, each image's logits centred first (a
    constant shift of all logits changes no prediction)."""
    signal = expected - expected.mean(1, keepdim=True)
    error = got - got.mean(1, keepdim=True) - signal
    return 10 * math.log10(float((signal**2).sum()) / max(float((error**2).sum()), 1e-30))


def export_model(
    model: nn.Module,
    fmt: str,
    out: Path,
    *,
    img_size: int = 224,
    batch: int = 1,
    int8: bool = False,
) -> ExportResult:
    """Fuse ``model`` and write its deploy form to ``out`` in format ``fmt``; check the result.

    Args:
        model: a roadmap network (training or deploy form; it is not modified).
        fmt: a registered runtime's format (:func:`roadmap.measure.runtimes.formats`: onnx,
            torchscript, executorch, coreml, and any plugin's).
        out: destination path (Core ML needs a ``.mlpackage`` suffix).
        img_size: square input resolution of the example input.
        batch: batch size of the example input.
        int8: with ``executorch``, quantize the program to int8 first (calibrated on random
            images) and check it against torch's float32 logits: their SQNR must reach
            ``INT8_MIN_SQNR_DB``.

    Raises:
        RoadmapError: unknown format, unwritable path, missing executorch or coremltools, or an
            export whose outputs disagree with torch.
    """
    runtime = runtimes.for_format(fmt)
    runtime.installed()  # one line saying how to install it, before any work
    if int8 and not runtime.int8:
        with_int8 = [r.format for r in runtimes.RUNTIMES.values() if r.int8 and r.exporter]
        raise RoadmapError(f"--int8: {fmt} has no int8 form; use --format {' or '.join(with_int8)}")
    deploy = fuse(model)
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(batch, 3, img_size, img_size, generator=generator)
    check = torch.cat([example, torch.randn(2, *example.shape[1:], generator=generator)])
    with torch.no_grad():
        expected = deploy(check)  # a few images, so that the logits vary
    _prepare(out)
    run, checked_with = runtime.exporter(deploy, example, out, int8)
    got = None if run is None else run(check)
    result = _result(out, fmt, example, expected, got, checked_with)
    if int8:
        result = dataclasses.replace(result, sqnr_db=sqnr_db(expected, got))
        check_int8(result)
    elif result.max_abs_diff is not None:
        _check(result, fmt)
    return result


def check_int8(result: ExportResult) -> None:
    """An int8 program's logits must carry more signal than quantization error."""
    if result.sqnr_db is None or result.sqnr_db < INT8_MIN_SQNR_DB:
        raise RoadmapError(
            f"the int8 program disagrees with torch: its logits' SQNR is {result.sqnr_db:.1f} dB "
            f"(below {INT8_MIN_SQNR_DB:g} dB, the error outweighs the signal); please report"
        )


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
