"""What a latency was measured under: :class:`Conditions`, stored beside every number.

A latency without its device, threads, batch, resolution, dtype, memory format, runtime and
library versions, iterations and the machine's load is not a number anyone can compare; the
field names are stable (records carry them), and a runtime outside torch adds what it knows
about itself (its version, its delegate; a plugin's runtime, into ``details``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from roadmap.measure import host


@dataclass(frozen=True)
class Conditions:
    """What a latency was measured under: stored beside every number (field names are stable).

    Attributes:
        device: "cpu" or "cuda".
        device_name: the GPU's name or the CPU model.
        threads: intra-op threads torch (and ONNX Runtime) used.
        batch: images per forward pass.
        img_size: square input resolution.
        dtype: the input and weight dtype.
        memory_format: "contiguous" or "channels_last".
        backend: what ran the model.
        torch_version: torch's version.
        onnxruntime_version: ONNX Runtime's version, when it ran the model.
        executorch_version: ExecuTorch's version, when it ran the model.
        delegate: the ExecuTorch backend the program was lowered to ("XNNPACK"), else None.
        onnxruntime_workers_spin: whether ONNX Runtime's idle workers spun between runs
            (False since it is turned off; None: not ONNX Runtime, or not recorded).
        details: what another runtime (a plugin's) records about itself: name -> value.
        warmup: untimed iterations per model.
        iters: timed iterations per model.
        interleaved_models: how many models shared the run, round by round.
        timer: how each iteration was timed.
        contention: how busy other work kept the machine (see :mod:`roadmap.measure.host`).
        platform: the OS.
        python_version: Python's version.
        measured_at: when (UTC, ISO 8601).
    """

    device: str
    device_name: str
    threads: int
    batch: int
    img_size: int
    dtype: str
    memory_format: str
    backend: str
    torch_version: str
    onnxruntime_version: str | None
    warmup: int
    iters: int
    interleaved_models: int
    timer: str
    contention: host.Contention
    platform: str
    python_version: str
    measured_at: str
    executorch_version: str | None = None
    delegate: str | None = None
    onnxruntime_workers_spin: bool | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def busy(self) -> bool:
        """Whether other work competed for the machine while we timed (the one rule)."""
        return host.is_busy(self.contention)

    def describe(self, fused: bool | None = True) -> str:
        """Two lines for a caption (``fused=None``: say nothing about the model's form)."""
        runtime = f"torch {self.torch_version}"
        if not self.in_torch:  # torch built and fused the model, another runtime ran it
            runtime += f", {self.runtime()}"
        form = {True: ", fused", False: ", UNFUSED (training form)", None: ""}[fused]
        return (
            f"{self.device} ({self.device_name}), {self.threads} threads, batch {self.batch}, "
            f"{self.img_size}x{self.img_size}, {self.dtype}, {self.memory_format}, "
            f"{self.backend}, {runtime}{form}\n"
            f"{self.warmup} warm-up + {self.iters} timed iterations per model, interleaved "
            f"across {self.interleaved_models} model(s); {host.busy_note(self.contention)}"
        )

    def runtime(self) -> str:
        """What ran the model, with its version (one label for captions, tables and plots)."""
        if self.executorch_version:
            return f"ExecuTorch {self.executorch_version} ({self.delegate} delegate)"
        if self.onnxruntime_version:
            spin = " (workers do not spin)" if self.onnxruntime_workers_spin is False else ""
            return f"ONNX Runtime {self.onnxruntime_version}{spin}"
        if self.details:
            said = ", ".join(f"{k} {v}" for k, v in self.details.items())
            return f"{self.backend} ({said})"
        return f"PyTorch {self.torch_version} ({self.backend})"

    @property
    def in_torch(self) -> bool:
        """Whether torch ran the model (other runtimes record their versions)."""
        return not (self.executorch_version or self.onnxruntime_version or self.details)

    def short(self) -> str:
        """One line for a table header: device, threads, batch, resolution."""
        return f"{self.device_name}, {self.threads} threads, batch {self.batch}, {self.img_size} px"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def device_name(device: str) -> str:
    """The GPU's name, or the CPU model as the OS reports it."""
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name()
    return host.cpu_name()
