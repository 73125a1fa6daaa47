"""Latency you can trust: median and IQR of per-iteration wall time, conditions stored beside them.

How a number is taken, and why:

- The model is the fused deploy form unless asked otherwise: that is what ships.
- Warm-up iterations come first: the allocator, oneDNN's primitive cache, TorchScript's
  profiling executor and ONNX Runtime's first run all make the first calls slow (RepViT issue
  #83 is about a cold first inference inflating a mean).
- Every iteration is timed on its own with ``time.perf_counter``; on CUDA the clock is read
  only after ``torch.cuda.synchronize()``, because kernels run asynchronously.
- Several models are measured interleaved (:mod:`roadmap.measure.interleave`): each round
  runs one iteration of every model, in an order reshuffled each round (fixed seed), so slow
  drift on a shared or throttling machine hits all of them alike and no model always runs
  right after the same neighbour.
- The median and the interquartile range are reported, not the mean: one preempted iteration
  moves a mean but not a median. The garbage collector is paused while timing.
- The conditions (:class:`Conditions`: device, threads, batch, resolution, dtype, memory
  format, backend, library versions, iterations, machine load) are stored with every record:
  a latency without them is not a number anyone can compare. On Linux that includes how many
  cores other processes kept busy while we timed (``other_cpu_cores``, from
  :mod:`roadmap.measure.host`): on a shared machine, that is the noise.

A difference between two records smaller than their pooled IQR (the mean of the two
interquartile ranges) is marked as noise (:func:`compare`): the one latency noise rule, which
every table, plot and lesson uses.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import torch
from torch import nn

from roadmap.errors import RoadmapError
from roadmap.measure import host, interleave
from roadmap.measure.conditions import Conditions, device_name
from roadmap.measure.runtimes import Runtime, Target, backends, get_runtime

DEVICES = ("cpu", "cuda")
# Defaults sized so that `roadmap latency --all` (eleven models at batch 1, 224 px) finishes
# well inside two minutes on two CPU cores, with enough samples for a stable median and IQR.
DEFAULT_WARMUP = 5
DEFAULT_ITERS = 30
# torch.utils.benchmark's Measurement warns when the IQR exceeds 10% of the median.
NOISY_IQR_FRACTION = 0.10


@dataclass(frozen=True)
class LatencySettings:
    """How to measure.

    Attributes:
        device: "cpu" or "cuda".
        batch: images per forward pass.
        img_size: square input resolution.
        threads: CPU threads for torch (and ONNX Runtime); None keeps what torch uses now.
        channels_last: run the torch backends in channels-last memory format.
        backend: the runtime that runs the model (:mod:`roadmap.measure.runtimes`): "eager",
            "torchscript" (``torch.jit.trace``), "compile" (``torch.compile`` with its default
            mode; the warm-up iterations compile, so at least one is required), "onnxruntime",
            "executorch" (the ``.pte`` program lowered to XNNPACK, run by the ExecuTorch
            runtime on the CPU; needs the ``[mobile]`` extra), or a plugin's.
        warmup: untimed iterations per model before timing.
        iters: timed iterations per model (one per round).
        seed: seeds the input and the per-round order.
        int8: with ``executorch``, the program quantized to int8 (PT2E, XNNPACK's quantizer,
            calibrated on random images: the speed of the form phones run, not its accuracy).
    """

    device: str = "cpu"
    batch: int = 1
    img_size: int = 224
    threads: int | None = None
    channels_last: bool = False
    backend: str = "eager"
    warmup: int = DEFAULT_WARMUP
    iters: int = DEFAULT_ITERS
    seed: int = 0
    int8: bool = False

    def check(self) -> None:
        """Raise :class:`RoadmapError` for settings that cannot be measured here."""
        if self.device not in DEVICES:
            raise RoadmapError(f"unknown device {self.device!r}; use one of {', '.join(DEVICES)}")
        runtime = self.runtime
        if runtime.timer is None:
            raise RoadmapError(
                f"--backend {self.backend} exports only; time one of {', '.join(backends())}"
            )
        if self.device == "cuda" and not torch.cuda.is_available():
            raise RoadmapError("--device cuda: torch sees no CUDA device; use --device cpu")
        if not runtime.in_torch and self.channels_last:
            raise RoadmapError(
                f"--channels-last applies to the torch backends; {self.backend} picks its own "
                "layout"
            )
        if self.int8 and not runtime.int8:
            with_int8 = [n for n in backends() if get_runtime(n).int8]
            raise RoadmapError(
                f"--int8 is a quantized program: add --backend {' or '.join(with_int8)}"
            )
        if self.device not in runtime.devices:
            raise RoadmapError(
                f"--backend {self.backend} runs on {' or '.join(runtime.devices)}; use --device "
                f"{runtime.devices[0]}"
            )
        runtime.installed()  # one line saying how to install it, if it is not
        if self.warmup < runtime.min_warmup:
            raise RoadmapError(
                f"--backend {self.backend} needs --warmup >= {runtime.min_warmup}: the first call "
                "compiles, and timing it would report the compiler, not the model"
            )
        if min(self.batch, self.img_size, self.iters) < 1 or self.warmup < 0:
            raise RoadmapError("batch, img_size and iters must be >= 1 and warmup >= 0")
        if self.threads is not None and self.threads < 1:
            raise RoadmapError(f"threads must be >= 1, got {self.threads}")

    @property
    def runtime(self) -> Runtime:
        """What runs the model (an unknown backend raises and lists the registered ones)."""
        return get_runtime(self.backend)


@dataclass(frozen=True)
class Candidate:
    """A model to measure.

    Attributes:
        label: its name in the results (a step name, or any label).
        model: the network; it is put in eval mode and moved to the device in place.
        steps: the roadmap steps it was built from, if any.
        fused: whether it is the deploy form.

    All candidates of one run use the settings' backend. Backends are compared in separate
    processes: runtimes with thread pools of their own disturb each other in one process (their
    idle workers spin on the cores the next runtime needs; ``benchmarks/backends.py`` measured
    eager at 29.9 ms interleaved with ONNX Runtime and ExecuTorch, 20.1 ms in a process alone).
    """

    label: str
    model: nn.Module
    steps: tuple[str, ...] = ()
    fused: bool = True


@dataclass(frozen=True)
class LatencyRecord:
    """One model's latency and the conditions it was measured under (field names are stable).

    Attributes:
        step: the label (the network's name, ``roadmap.arch.selection``).
        steps: the steps the model was built from.
        fused: whether the deploy form was measured.
        median_ms: median per-iteration latency.
        p25_ms: 25th percentile.
        p75_ms: 75th percentile.
        iqr_ms: p75 - p25.
        min_ms: fastest iteration.
        n: timed iterations.
        conditions: what it was measured under.
        samples_ms: every timed iteration, in the order taken.
    """

    step: str
    steps: list[str]
    fused: bool
    median_ms: float
    p25_ms: float
    p75_ms: float
    iqr_ms: float
    min_ms: float
    n: int
    conditions: Conditions
    samples_ms: list[float] = field(repr=False)

    @property
    def noisy(self) -> bool:
        """Whether the spread is large (IQR over 10% of the median)."""
        return self.iqr_ms > NOISY_IQR_FRACTION * self.median_ms

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Comparison:
    """``b`` against ``a``.

    Attributes:
        a: label of the reference record.
        b: label of the compared record.
        delta_ms: median of b minus median of a.
        ratio: median of b over median of a.
        noise: |delta_ms| is below the pooled IQR, so the difference is within the noise.
    """

    a: str
    b: str
    delta_ms: float
    ratio: float
    noise: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def compare(a: LatencyRecord, b: LatencyRecord) -> Comparison:
    """Compare two records; the difference is noise when it is below their pooled IQR."""
    delta = b.median_ms - a.median_ms
    noise = abs(delta) < pooled_iqr(a, b)
    ratio = b.median_ms / a.median_ms if a.median_ms > 0 else math.nan  # a part that was absent
    return Comparison(a.step, b.step, delta, ratio, noise)


def pooled_iqr(a: LatencyRecord, b: LatencyRecord) -> float:
    """The mean of the two interquartile ranges: the spread a real difference must exceed."""
    return (a.iqr_ms + b.iqr_ms) / 2


def consecutive(records: Sequence[LatencyRecord]) -> list[Comparison]:
    """Each record against the one before it (step-to-step differences)."""
    return [compare(a, b) for a, b in zip(records, records[1:], strict=False)]


def summarize(samples_ms: Sequence[float]) -> tuple[float, float, float]:
    """(p25, median, p75) of the samples (linear interpolation between order statistics)."""
    if len(samples_ms) == 1:
        return samples_ms[0], samples_ms[0], samples_ms[0]
    p25, median, p75 = statistics.quantiles(samples_ms, n=4, method="inclusive")
    return p25, median, p75


def measure(
    candidates: Sequence[Candidate],
    settings: LatencySettings,
    progress: Callable[[str], None] | None = None,
) -> list[LatencyRecord]:
    """Measure several models interleaved, round by round; one record per candidate, in order.

    Args:
        candidates: the models (labels must be unique).
        settings: how to measure.
        progress: told which model is being prepared (an ExecuTorch program takes seconds to
            lower, an int8 one longer), then that the timing runs.
    """
    labels = [c.label for c in candidates]
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be unique, got {labels}")
    settings.check()
    say = progress or (lambda _text: None)
    with torch_threads(settings.threads) as threads:
        runners = []
        for i, c in enumerate(candidates):
            say(f"preparing {i + 1}/{len(candidates)} for {settings.backend}: {c.label}")
            runners.append(_runner(c.model, settings, threads))
        say(f"timing {len(candidates)} networks, {settings.iters} rounds")
        watch = host.CpuWatch()
        samples = _time_interleaved(runners, settings, _synchronizer(settings))
        contention = watch.stop()
    conditions = conditions_of(settings, threads, len(candidates), contention)
    return [_record(c, s, conditions) for c, s in zip(candidates, samples, strict=True)]


def _record(candidate: Candidate, samples: list[float], conditions: Conditions) -> LatencyRecord:
    return record_of(candidate.label, candidate.steps, candidate.fused, samples, conditions)


def record_of(
    label: str,
    steps: Sequence[str],
    fused: bool,
    samples: list[float],
    conditions: Conditions,
) -> LatencyRecord:
    """A record from per-iteration samples (ms): median, quartiles, IQR, fastest."""
    p25, median, p75 = summarize(samples)
    return LatencyRecord(
        step=label,
        steps=list(steps),
        fused=fused,
        median_ms=median,
        p25_ms=p25,
        p75_ms=p75,
        iqr_ms=p75 - p25,
        min_ms=min(samples),
        n=len(samples),
        conditions=conditions,
        samples_ms=samples,
    )


def _time_interleaved(
    runners: list[Callable[[], object]], settings: LatencySettings, sync: Callable[[], None]
) -> list[list[float]]:
    """Warm every model up, then time one iteration of each per round, in shuffled order."""
    samples: list[list[float]] = [[] for _ in runners]
    with interleave.steady():
        interleave.warm_up(runners, settings.warmup, sync)
        for i in interleave.rounds(len(runners), settings.iters, settings.seed):
            start = time.perf_counter()
            runners[i]()
            sync()
            samples[i].append((time.perf_counter() - start) * 1e3)
    return samples


def _synchronizer(settings: LatencySettings) -> Callable[[], None]:
    if settings.device == "cuda" and settings.runtime.in_torch:
        return torch.cuda.synchronize  # other runtimes' run() already returns host arrays
    return lambda: None


def _runner(model: nn.Module, settings: LatencySettings, threads: int) -> Callable[[], object]:
    """A zero-argument callable that runs one forward pass on a fixed random input: the
    runtime's timer, handed the model and input on the device and in the memory format asked
    for (a runtime outside torch gets them on the CPU and picks its own)."""
    runtime = settings.runtime
    generator = torch.Generator().manual_seed(settings.seed)
    x = torch.randn(settings.batch, 3, settings.img_size, settings.img_size, generator=generator)
    target = Target(threads, settings.device, settings.int8)
    if not runtime.in_torch:
        return runtime.timer(model.eval().cpu(), x, target)
    fmt = torch.channels_last if settings.channels_last else torch.contiguous_format
    model = model.eval().to(settings.device, memory_format=fmt)
    return runtime.timer(model, x.to(settings.device).contiguous(memory_format=fmt), target)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Set torch's intra-op threads for the block (restored afterwards); yields the count used."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def conditions_of(
    settings: LatencySettings, threads: int, n_models: int, contention: host.Contention
) -> Conditions:
    cuda = settings.device == "cuda"
    said = settings.runtime.conditions()  # its version, its delegate, ...
    known = {f.name for f in dataclasses.fields(Conditions)}
    return Conditions(
        device=settings.device,
        device_name=device_name(settings.device),
        threads=threads,
        batch=settings.batch,
        img_size=settings.img_size,
        dtype="int8" if settings.int8 else "float32",
        memory_format="channels_last" if settings.channels_last else "contiguous",
        backend=settings.backend,
        torch_version=torch.__version__,
        onnxruntime_version=said.get("onnxruntime_version"),
        warmup=settings.warmup,
        iters=settings.iters,
        interleaved_models=n_models,
        timer="perf_counter per iteration" + (", cuda synchronized" if cuda else ""),
        contention=contention,
        platform=platform.platform(),
        python_version=platform.python_version(),
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **{k: v for k, v in said.items() if k in known and k != "onnxruntime_version"},
        details={k: v for k, v in said.items() if k not in known},
    )


# --- roadmap networks ---------------------------------------------------------------------


def measure_selections(
    selections: Sequence[Any],
    settings: LatencySettings,
    *,
    fused: bool = True,
    num_classes: int = 1000,
) -> list[LatencyRecord]:
    """Build each selection, fuse it (unless ``fused=False``) and measure all interleaved.

    Args:
        selections: ``roadmap.arch.selection.Selection`` objects, one per model.
        settings: how to measure.
        fused: measure the deploy form (the default) or the training form in eval mode.
        num_classes: classifier width.
    """
    settings.check()  # fail before the builds, not after
    return measure(candidates_of(selections, fused=fused, num_classes=num_classes), settings)


def candidates_of(
    selections: Sequence[Any], *, fused: bool = True, num_classes: int = 1000
) -> list[Candidate]:
    """Each selection built, fused unless ``fused=False``, labelled with its one name."""
    from roadmap.arch.builder import build
    from roadmap.arch.reparam import fuse

    candidates = []
    for selection in selections:
        model = build(selection.spec(num_classes))
        model = fuse(model) if fused else model.eval()
        candidates.append(Candidate(selection.name, model, selection.steps, fused))
    return candidates


def thread_warning(threads: int | None) -> str | None:
    """A warning when more threads are asked for than this process has cores."""
    cores = host.usable_cores()
    if threads is not None and threads > cores:
        return (
            f"--threads {threads} on {cores} usable cores: the threads will take turns, and the "
            "latency measures that contention rather than the model"
        )
    return None
