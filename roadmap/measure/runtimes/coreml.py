"""Core ML: conversion of the traced, fused model to an ML program (``.mlpackage``), and what
the package holds.

Needs the optional ``coremltools`` (``pip install -e ".[coreml]"``). Conversion works on Linux;
running a Core ML model needs macOS, so a package is checked by its structure instead: read
back, it must take the example's shape and hold one ``conv`` op per convolution of the fused
model, one ``linear`` per linear layer and no batch norm. FP16 compute and iOS 16 as in the
paper's iPhone 12 protocol; open the package in Xcode and use its Core ML performance report to
time it on a device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roadmap.errors import RoadmapError
from roadmap.measure.runtimes import (
    INPUT_NAME,
    OUTPUT_NAME,
    Runner,
    Runtime,
    register_runtime,
    requires,
)
from roadmap.measure.runtimes.torchscript import trace
from roadmap.util import files

if TYPE_CHECKING:
    import torch
    from torch import nn

COREML_INSTALL = 'pip install -e ".[coreml]"'


def convert(model: nn.Module, example: torch.Tensor, out: Path) -> None:
    """Write the Core ML ML program of ``model`` (traced on ``example``) to ``out``, atomically."""
    try:
        import coremltools as ct
    except ImportError:
        raise RoadmapError(f"Core ML export needs coremltools: {COREML_INSTALL}") from None
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
    from torch import nn

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


def export(model: nn.Module, example: torch.Tensor, out: Path, int8: bool) -> tuple[Runner, str]:
    """Convert to an ``.mlpackage`` and check what it holds (it cannot run here)."""
    if out.suffix != ".mlpackage":
        raise RoadmapError(f"Core ML ML programs are saved as .mlpackage, not {out.name!r}")
    convert(model, example, out)
    structure = coreml_structure(out)
    check_coreml_structure(structure, model, tuple(example.shape))
    return None, (
        f"structure checked: {structure.describe()}; not run: Core ML prediction needs macOS "
        "(time it with Xcode's performance report)"
    )


COREML = register_runtime(
    Runtime(
        "coreml",
        'Core ML ML program for iOS 16 (pip install -e ".[coreml]"; runs on macOS only)',
        exporter=export,
        format="coreml",
        suffix=".mlpackage",
        devices=(),
        installed=requires("coremltools", "coremltools", COREML_INSTALL),
    )
)
