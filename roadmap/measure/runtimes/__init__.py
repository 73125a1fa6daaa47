"""Runtimes: what a deployed network runs in, one module each, found through one registry.

A :class:`Runtime` holds everything the tool knows about one: how ``roadmap latency --backend
NAME`` times a network in it (its *timer*), how ``roadmap export --format FORMAT`` writes its
file and runs the file back for the check (its *exporter*), where it runs, whether it has an
int8 form, and what a latency record says about it (its *conditions*). Latency, export, and the
command line's choices and help all read the registry, so a runtime registered by a plugin
(``register_runtime`` in a ``--plugin`` file, or an installed package's ``roadmap.runtimes``
entry point) is timed and exported like the built-in ones:

- :mod:`~roadmap.measure.runtimes.torch_eager`: torch eager, and ``torch.compile``;
- :mod:`~roadmap.measure.runtimes.torchscript`: ``torch.jit`` tracing, saving and loading;
- :mod:`~roadmap.measure.runtimes.onnxruntime`: ONNX serialization and ONNX Runtime sessions;
- :mod:`~roadmap.measure.runtimes.executorch`: ``.pte`` programs lowered to XNNPACK, and the
  ExecuTorch runtime;
- :mod:`~roadmap.measure.runtimes.coreml`: Core ML conversion and the package's structure
  (running Core ML needs macOS, so it exports and is not timed).

Each imports its runtime (and torch) only when used, and says in one line how to install it
when missing, so listing the runtimes for ``--help`` costs nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roadmap.util.registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn

# The names of the exported graphs' input and output (ONNX and Core ML).
INPUT_NAME, OUTPUT_NAME = "input", "logits"
ENTRY_POINTS = "roadmap.runtimes"  # an installed package's runtimes: name = module
BUILT_IN = ("torch_eager", "torchscript", "onnxruntime", "executorch", "coreml")

# An exported file run back: a batch of images -> logits (None: it cannot run here).
Runner = Callable[["torch.Tensor"], "torch.Tensor"] | None


@dataclass(frozen=True)
class Target:
    """Where and how a timed network runs.

    Attributes:
        threads: intra-op threads (torch's count, so runtimes compare).
        device: ``cpu`` or ``cuda``.
        int8: the runtime's int8 form (only where :attr:`Runtime.int8`).
    """

    threads: int
    device: str = "cpu"
    int8: bool = False


@dataclass(frozen=True)
class Runtime:
    """One runtime (see the module docstring).

    Attributes:
        name: ``--backend NAME``.
        title: a few words for help and ``roadmap runtimes``.
        timer: ``(fused model, input, target) -> zero-argument callable`` that runs one
            forward pass; None when it cannot be timed here.
        exporter: ``(fused model, example input, path, int8) -> (runner, what runs it)``:
            writes the file and loads it back for the check; None when it does not export.
        format: the ``--format`` name of what it exports (``onnx`` for ONNX Runtime).
        suffix: the exported file's suffix (``.onnx``).
        in_torch: torch runs the model: ``--channels-last`` applies and CUDA is synchronized
            around each iteration; other runtimes take the model and input on the CPU.
        devices: where it runs.
        int8: whether it has an int8 form (``--int8``).
        min_warmup: untimed iterations it needs at least (``torch.compile`` compiles in the
            first one).
        installed: raises the one-line install instruction when its package is missing.
        conditions: what a latency record says about it: ``Conditions`` fields, and any other
            key into ``Conditions.details``.
    """

    name: str
    title: str
    timer: Callable[[nn.Module, torch.Tensor, Target], Callable[[], object]] | None = None
    exporter: Callable[[nn.Module, torch.Tensor, Path, bool], tuple[Runner, str]] | None = None
    format: str | None = None
    suffix: str = ""
    in_torch: bool = False
    devices: tuple[str, ...] = ("cpu",)
    int8: bool = False
    min_warmup: int = 0
    installed: Callable[[], object] = field(default=lambda: None, compare=False)
    conditions: Callable[[], dict[str, Any]] = field(default=dict, compare=False)


def requires(package: str, what: str, install: str) -> Callable[[], None]:
    """An ``installed`` check: finds ``package`` without importing it (imports are slow and
    noisy), else raises ``what is not installed: install``."""

    def check() -> None:
        import importlib.util
        import sys

        from roadmap.errors import RoadmapError

        if package in sys.modules:  # imported already (None: made unimportable on purpose)
            found = sys.modules[package] is not None
        else:
            found = importlib.util.find_spec(package) is not None
        if not found:
            raise RoadmapError(f"{what} is not installed: {install}")

    return check


def _load_installed() -> None:
    """The built-in runtimes' modules (light: each imports its runtime on use), then every
    installed package's ``roadmap.runtimes`` entry point (imported on first use)."""
    from importlib.metadata import entry_points

    for module in BUILT_IN:
        importlib.import_module(f"{__name__}.{module}")
    for ep in entry_points(group=ENTRY_POINTS):
        RUNTIMES.declare(ep.name, ep.value)


RUNTIMES: Registry[Runtime] = Registry("runtime", loader=_load_installed)


def register_runtime(runtime: Runtime) -> Runtime:
    """Make a runtime known by its name (which must be new, as its format name must); returns
    it."""
    from roadmap.errors import RoadmapError

    if runtime.format and any(r.format == runtime.format for r in RUNTIMES._items.values()):
        raise RoadmapError(f"export format {runtime.format!r} is already registered")
    owner = (runtime.timer or runtime.exporter or register_runtime).__module__
    return RUNTIMES.register(runtime.name, runtime, owner=owner)


def get_runtime(name: str) -> Runtime:
    """The runtime called ``name`` (``--backend``); an unknown one raises and lists them."""
    return RUNTIMES.get(name)


def backends() -> list[str]:
    """The runtimes latency can time (``--backend`` choices), in registration order."""
    return [r.name for r in RUNTIMES.values() if r.timer is not None]


def formats() -> list[str]:
    """The formats export can write (``--format`` choices of ``roadmap export``)."""
    return [r.format for r in RUNTIMES.values() if r.exporter is not None and r.format]


def for_format(fmt: str) -> Runtime:
    """The runtime that writes ``fmt``; an unknown format raises and lists them."""
    from roadmap.errors import RoadmapError
    from roadmap.util.names import did_you_mean
    from roadmap.util.registry import shown

    found = [r for r in RUNTIMES.values() if r.exporter is not None and r.format == fmt]
    if not found:
        known = formats()
        raise RoadmapError(
            f"unknown export format {shown(fmt)!r}{did_you_mean(str(fmt), known)}; use one of "
            f"{', '.join(known)}"
        )
    return found[0]
