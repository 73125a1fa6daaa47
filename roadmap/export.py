"""Export the deploy form (fused) to ONNX, TorchScript or Core ML, and check it against torch.

- ONNX goes through torch's TorchScript-based exporter (``dynamo=False``): the torch.export
  based one needs the ``onnxscript`` package, which is not a dependency. The batch axis is
  dynamic. The file is run with onnxruntime and compared with torch before we report success.
- TorchScript is ``torch.jit.trace`` of the fused model; the saved file is loaded back and
  compared with torch.
- Core ML needs the optional ``coremltools`` (``pip install -e ".[coreml]"``). It converts the
  traced model to an ML program (``.mlpackage``, FP16 compute, iOS 16 as in the paper's iPhone
  12 protocol). Conversion works on Linux; running a Core ML model needs macOS, so it is not
  compared here. Open the package in Xcode and use its Core ML performance report to time it
  on a device.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from roadmap import files
from roadmap.errors import RoadmapError
from roadmap.reparam import fuse

FORMATS = ("onnx", "torchscript", "coreml")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "coreml": ".mlpackage"}
# Opset 17 has every op these networks use (HardSwish since 14) and is read by every current
# runtime, mobile ones included.
ONNX_OPSET = 17
# The check compares logits relative to their spread over the example batch (max - min): fp32
# sums taken in another order by another runtime differ by ~3e-7 of it (measured on every step,
# ONNX Runtime, 224 px), an export that outputs zeros by ~0.5, a 1 % scale error by ~1e-2.
TOLERANCE = 1e-4
# Logits that barely vary with the input cannot tell a right export from a wrong one.
MIN_SPREAD = 1e-6
INPUT_NAME, OUTPUT_NAME = "input", "logits"


@dataclass(frozen=True)
class ExportResult:
    """What was written.

    Attributes:
        path: the file (or ``.mlpackage`` directory) written.
        format: "onnx", "torchscript" or "coreml".
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
        fmt: "onnx", "torchscript" or "coreml".
        out: destination path (Core ML needs a ``.mlpackage`` suffix).
        img_size: square input resolution of the example input.
        batch: batch size of the example input.

    Raises:
        RoadmapError: unknown format, unwritable path, missing coremltools, or an export whose
            outputs disagree with torch.
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
    exporter = {"onnx": _onnx, "torchscript": _torchscript, "coreml": _coreml}[fmt]
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


def onnx_bytes(model: nn.Module, x: torch.Tensor) -> bytes:
    """The ONNX serialization of ``model`` traced on ``x``, with a dynamic batch axis."""
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


def trace(model: nn.Module, x: torch.Tensor) -> torch.jit.ScriptModule:
    """``torch.jit.trace`` without its deprecation notice (Core ML's converter takes a trace)."""
    with _quiet_jit(), torch.no_grad():  # tracing must happen outside inference mode
        return torch.jit.trace(model, x)


@contextmanager
def _quiet_jit() -> Iterator[None]:
    """Silence torch.jit's deprecation notices: TorchScript is still what the tools here take."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=FutureWarning)
        yield


def run_onnx(path_or_bytes: Path | bytes, x: torch.Tensor) -> torch.Tensor:
    """Run an ONNX model with onnxruntime (CPU) on ``x``."""
    import onnxruntime as ort

    source = str(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {INPUT_NAME: x.numpy()})
    return torch.from_numpy(logits)


# Each exporter writes ``out`` from the model traced on ``example`` and returns a function that
# runs the written file on a batch (None when it cannot run here), and what runs it.
Runner = Callable[[torch.Tensor], torch.Tensor] | None


def _onnx(model: nn.Module, example: torch.Tensor, out: Path) -> tuple[Runner, str]:
    _write(out, onnx_bytes(model, example))
    import onnxruntime as ort

    return lambda x: run_onnx(out, x), f"onnxruntime {ort.__version__}"


def _torchscript(model: nn.Module, example: torch.Tensor, out: Path) -> tuple[Runner, str]:
    traced = trace(model, example)
    buffer = io.BytesIO()
    with _quiet_jit():
        torch.jit.save(traced, buffer)
        _write(out, buffer.getvalue())
        loaded = torch.jit.load(str(out))
    return torch.no_grad()(loaded), f"torch.jit.load (torch {torch.__version__})"


def _coreml(model: nn.Module, example: torch.Tensor, out: Path) -> tuple[Runner, str]:
    try:
        import coremltools as ct
    except ImportError:
        raise RoadmapError('Core ML export needs coremltools: pip install -e ".[coreml]"') from None
    traced = trace(model, example)
    mlmodel = ct.convert(
        traced,
        inputs=[ct.TensorType(name=INPUT_NAME, shape=tuple(example.shape))],
        outputs=[ct.TensorType(name=OUTPUT_NAME)],
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS16,  # the paper's iPhone 12 ran iOS 16
    )
    with files.atomic_path(out) as tmp:
        mlmodel.save(str(tmp))
    return None, "not run: Core ML prediction needs macOS (time it with Xcode's performance report)"


def _write(out: Path, data: bytes) -> None:
    """Write atomically: a reader never sees half a model."""
    files.write_bytes(out, data)
