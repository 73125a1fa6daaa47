"""Export the deploy form (fused) to ONNX, TorchScript, ExecuTorch or Core ML; check it on torch.

- ONNX goes through torch's TorchScript-based exporter (``dynamo=False``): the torch.export
  based one needs the ``onnxscript`` package, which is not a dependency. The batch axis is
  dynamic. The file is run with onnxruntime and compared with torch before we report success.
- TorchScript is ``torch.jit.trace`` of the fused model; the saved file is loaded back and
  compared with torch.
- ExecuTorch needs the optional ``executorch`` (``pip install -e ".[mobile]"``): ``torch.export``
  of the fused model, lowered with the XNNPACK partitioner (the CPU kernels ExecuTorch runs on
  Android and iOS phones) to a ``.pte`` program. Shapes are static: the program takes exactly
  the example's batch and resolution, as a phone app would. The file is loaded back with
  ``executorch.runtime`` and compared with torch.
- Core ML needs the optional ``coremltools`` (``pip install -e ".[coreml]"``). It converts the
  traced model to an ML program (``.mlpackage``, FP16 compute, iOS 16 as in the paper's iPhone
  12 protocol). Conversion works on Linux; running a Core ML model needs macOS, so its outputs
  are not compared here. Its structure is: the package is read back and must take the example's
  shape and hold one ``conv`` op per convolution of the fused model, one ``linear`` per linear
  layer and no batch norm. Open the package in Xcode and use its Core ML performance report to
  time it on a device.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from roadmap.arch.reparam import fuse
from roadmap.errors import RoadmapError
from roadmap.util import files
from roadmap.util.stderr_filter import filtered_stderr

FORMATS = ("onnx", "torchscript", "executorch", "coreml")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "executorch": ".pte", "coreml": ".mlpackage"}
MOBILE_INSTALL = 'pip install -e ".[mobile]"'
EXECUTORCH_DELEGATE = "XNNPACK"
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


def _executorch(model: nn.Module, example: torch.Tensor, out: Path) -> tuple[Runner, str]:
    _write(out, executorch_bytes(model, example))
    forward = load_executorch(out, torch.get_num_threads())
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

    return run, f"executorch {executorch_version()} runtime, {EXECUTORCH_DELEGATE} delegate"


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
    structure = coreml_structure(out)
    check_coreml_structure(structure, model, tuple(example.shape))
    return None, (
        f"structure checked: {structure.describe()}; not run: Core ML prediction needs macOS "
        "(time it with Xcode's performance report)"
    )


@dataclass(frozen=True)
class CoreMLStructure:
    """What a saved Core ML ML program holds, read back from the package.

    Attributes:
        inputs: input name -> shape.
        outputs: output name -> shape (empty when the converter leaves it unknown).
        ops: op type -> how many times the main function uses it (weights are ``const`` ops).
    """

    inputs: dict[str, tuple[int, ...]]
    outputs: dict[str, tuple[int, ...]]
    ops: dict[str, int]

    def describe(self) -> str:
        compute = {k: v for k, v in self.ops.items() if k != "const"}
        return (
            f"{sum(compute.values())} ops ({self.ops.get('conv', 0)} conv, "
            f"{self.ops.get('linear', 0)} linear, {self.ops.get('batch_norm', 0)} batch_norm)"
        )


def coreml_structure(path: Path) -> CoreMLStructure:
    """Read an ``.mlpackage``'s inputs, outputs and op counts (works on Linux: nothing runs)."""
    import coremltools as ct

    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    main = spec.mlProgram.functions["main"]
    block = main.block_specializations[main.opset]
    ops: dict[str, int] = {}
    for op in block.operations:
        ops[op.type] = ops.get(op.type, 0) + 1

    def shapes(features: Any) -> dict[str, tuple[int, ...]]:
        return {f.name: tuple(f.type.multiArrayType.shape) for f in features}

    return CoreMLStructure(shapes(spec.description.input), shapes(spec.description.output), ops)


def check_coreml_structure(
    structure: CoreMLStructure, deploy: nn.Module, input_shape: tuple[int, ...]
) -> None:
    """The package must take the example's shape and hold the fused model's layers: one
    ``conv`` per Conv2d, one ``linear`` per Linear, and no batch norm left to fold."""
    want = {
        "conv": sum(isinstance(m, nn.Conv2d) for m in deploy.modules()),
        "linear": sum(isinstance(m, nn.Linear) for m in deploy.modules()),
        "batch_norm": 0,
    }
    problems = [
        f"{n} {op} ops, the fused model has {want[op]}"
        for op, n in ((op, structure.ops.get(op, 0)) for op in want)
        if n != want[op]
    ]
    if structure.inputs != {INPUT_NAME: input_shape}:
        problems.append(f"inputs {structure.inputs}, expected {INPUT_NAME} {list(input_shape)}")
    if OUTPUT_NAME not in structure.outputs:
        problems.append(f"outputs {sorted(structure.outputs)}, expected {OUTPUT_NAME}")
    if problems:
        raise RoadmapError(
            "the Core ML package does not hold the fused model: " + "; ".join(problems)
        )


def _write(out: Path, data: bytes) -> None:
    """Write atomically: a reader never sees half a model."""
    files.write_bytes(out, data)


# --- ExecuTorch ---------------------------------------------------------------------------

# What the ExecuTorch runtime writes straight to the process's stderr at load time: cpuinfo's
# probing of ARM-only files, and the thread-pool size we set ourselves (recorded as a condition).
_RUNTIME_CHATTER = re.compile(r"\[(cpuinfo_utils|threadpool)\.cpp:\d+\]")


def executorch_bytes(model: nn.Module, x: torch.Tensor) -> bytes:
    """The ``.pte`` program of ``model`` for inputs shaped like ``x``, lowered to XNNPACK.

    ``torch.export`` captures the graph, ``to_edge_transform_and_lower`` hands every op the
    XNNPACK partitioner accepts to that delegate (ops it does not take run on ExecuTorch's
    portable kernels), and ``to_executorch`` serializes the program.
    """
    with _quiet_executorch():
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        with torch.no_grad():
            program = torch.export.export(model.eval(), (x,))
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        return lowered.to_executorch().buffer


def load_executorch(source: Path | bytes, threads: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Load a ``.pte`` program with the ExecuTorch runtime; return its forward on one tensor.

    The runtime's thread pool is process-wide and is read when a program is loaded, so it is
    sized here, before loading (resizing it afterwards slows a loaded program down ~2x).
    """
    with _quiet_executorch():
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        portable_lib._unsafe_reset_threadpool(threads)
        program = Runtime.get().load_program(source if isinstance(source, bytes) else str(source))
        method = program.load_method("forward")

    def forward(x: torch.Tensor) -> torch.Tensor:
        _ = program  # the method runs out of its program's memory: keep it alive
        return method.execute([x.contiguous()])[0]

    return forward


def executorch_version() -> str:
    """The installed ExecuTorch's version (a clear error when it is missing)."""
    with _quiet_executorch():
        from executorch.version import __version__
    return __version__


@contextmanager
def _quiet_executorch() -> Iterator[None]:
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
