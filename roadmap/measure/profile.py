"""Why did latency change? A forward pass's time split by layer kind, measured with torch.profiler.

The paper argues for its steps with costs: SE is expensive, the wide head is expensive, large
kernels are poorly optimized on mobile. :func:`profile_selections` lets a reader check those
arguments on their own machine: it times each kind of layer inside the real forward pass.

How the split is made (our choices; the paper gives no such breakdown):

- Every module of the network is assigned one **kind** (:data:`KINDS`) by :func:`units`:
  - ``SE``: a squeeze-and-excitation module, all of it (pooling, its two 1x1 convs, its
    activations and the gating multiply): the step ``alternating_se`` is about its total cost.
  - ``activation``: every activation outside SE, wherever it is: the step ``gelu`` changes all
    of them, stem and head included.
  - ``stem``, ``downsampling``, ``head``: the rest of those parts, by where it sits.
  - ``token mixer`` (depthwise convolutions, RepVGG-style branches included) and ``channel
    mixer`` (1x1 convolutions, the FFN) inside the blocks, by the parts each block kind
    declares (:mod:`roadmap.arch.blocks`: a RepViT block's ``token_mixer`` and
    ``channel_mixer``, a MobileNetV3 block's ``conv_dw`` and ``conv_pw``/``conv_pwl``, ...),
    or for a convolution no part names by its shape (depthwise, or 1x1).
  - ``attention`` and ``MLP``: a transformer block's two halves, each with its norm (the
    activation inside the MLP counts as ``activation``, as everywhere).
  - ``other``: operators outside every module above, run by a container's forward: residual
    additions, flattening.
  Modules are assigned whole where they hold no activation and no SE (a RepVGG token mixer in
  training form, with its three branches and their sum, is one token-mixer unit); otherwise the
  assignment descends into their children. Units never nest, so no time is counted twice.
- A forward hook pair opens and closes a ``torch.profiler.record_function`` range around every
  unit; each forward pass is itself a range. Per forward pass, a kind's time is the summed
  duration of its ranges, ``other`` the summed duration of operators directly inside the pass,
  and ``unattributed`` what is left: Python between operators and the hooks' own cost. The
  kinds, ``other`` and ``unattributed`` add up to the pass's time exactly.
- As for latency (:mod:`roadmap.measure.latency`), models are warmed up, then run interleaved
  round by round in shuffled order, and every kind's median and IQR over the passes is reported; the
  difference between two networks' kind is noise under the same pooled-IQR rule.
- The hooks and the profiler add time (about 2 ms per pass on RepViT-M0.9, 2 CPU threads,
  224 px): a profiled total is not a latency. Compare shares and differences; take latencies
  from ``roadmap latency``.
- CPU and torch eager only: on a GPU the CPU-side ranges time kernel launches, not kernels, and
  the other runtimes do not run torch modules.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from roadmap.arch.blocks import get_block_kind
from roadmap.errors import RoadmapError
from roadmap.measure import host, interleave, latency
from roadmap.measure.conditions import Conditions
from roadmap.measure.latency import Candidate, Comparison, LatencyRecord, LatencySettings
from roadmap.util.stderr_filter import filtered_stderr

KINDS = (
    "stem",
    "token mixer",
    "SE",
    "channel mixer",
    "attention",
    "MLP",
    "downsampling",
    "head",
    "activation",
    "other",
)
UNATTRIBUTED = "unattributed"
TOTAL = "total"
ACTIVATIONS = frozenset(
    {
        "ReLU",
        "ReLU6",
        "GELU",
        "GELUTanh",
        "Hardswish",
        "HardSwish",
        "Hardsigmoid",
        "HardSigmoid",
        "Sigmoid",
        "SiLU",
        "Swish",
        "Tanh",
        "LeakyReLU",
        "PReLU",
        "Mish",
    }
)
_RANGE = "roadmap::"
# What the profiler (Kineto) prints on stderr when it starts and stops, and when a CUDA build
# finds no GPU.
_PROFILER_CHATTER = re.compile(r"^(USDT|ERROR|WARNING|INFO):\d{4}-\d\d-\d\d .*\.cpp:\d+\]")


@dataclass(frozen=True)
class Unit:
    """A module whose time counts for one kind.

    Attributes:
        path: its name in the network (``stages.2.blocks.0.token_mixer``).
        kind: one of :data:`KINDS`.
    """

    path: str
    kind: str


def units(model: nn.Module) -> list[tuple[Unit, nn.Module]]:
    """Every module that gets a profiler range, with its kind; none contains another."""
    parts = declared_parts(model)
    found: list[tuple[Unit, nn.Module]] = []

    def visit(path: str, module: nn.Module) -> None:
        children = list(module.named_children())
        if isinstance(module, nn.Identity) or (not children and _is_container(module)):
            return  # does nothing
        if parts.get(path) == "SE":
            found.append((Unit(path, "SE"), module))
        elif not children:
            kind = "activation" if _is_activation(module) else _where(path, module, parts)
            found.append((Unit(path, kind), module))
        elif path and not _holds_activation_or_se(path, module, parts):
            if (kind := _where(path, module, parts)) != "other":
                found.append((Unit(path, kind), module))
                return
            for name, child in children:
                visit(f"{path}.{name}", child)
        else:
            for name, child in children:
                visit(f"{path}.{name}" if path else name, child)

    visit("", model)
    return found


def declared_parts(model: nn.Module) -> dict[str, str]:
    """Module path -> profile kind of every part the blocks' kinds declare (from the spec the
    model was built from; a model without one has none)."""
    spec = getattr(model, "spec", None)
    if spec is None:
        return {}
    return {
        f"{block_path}.{name}": kind
        for block_path, block in spec.iter_blocks()
        for name, kind in get_block_kind(block.kind).parts.items()
    }


def _is_activation(module: nn.Module) -> bool:
    return type(module).__name__ in ACTIVATIONS


def _is_container(module: nn.Module) -> bool:
    return isinstance(module, nn.Sequential | nn.ModuleList | nn.ModuleDict)


def _holds_activation_or_se(path: str, module: nn.Module, parts: dict[str, str]) -> bool:
    return any(
        _is_activation(m) or parts.get(f"{path}.{name}") == "SE"
        for name, m in module.named_modules()
        if not isinstance(m, nn.Identity)
    )


def _where(path: str, module: nn.Module, parts: dict[str, str]) -> str:
    """The kind of a module that is not SE or an activation: from where it sits, from the part
    of a block it belongs to, or, for a convolution no part names, from its shape."""
    names = path.split(".")
    if names[0] in ("stem", "head"):
        return names[0]
    if "downsample" in names:
        return "downsampling"
    for end in range(len(names), 0, -1):  # the nearest enclosing declared part
        if (kind := parts.get(".".join(names[:end]))) is not None:
            return kind
    if isinstance(module, nn.Conv2d):
        if module.groups == module.in_channels > 1:
            return "token mixer"
        if module.kernel_size == (1, 1):
            return "channel mixer"
    return "other"


@dataclass(frozen=True)
class Profile:
    """One network's forward time split by kind.

    Attributes:
        label: the network's name.
        total: the profiled forward pass (hooks and profiler included).
        kinds: kind -> its time per pass, for every kind in :data:`KINDS` and
            :data:`UNATTRIBUTED` (a kind the network lacks has zeros).
    """

    label: str
    total: LatencyRecord
    kinds: dict[str, LatencyRecord]

    def share(self, kind: str) -> float:
        """The kind's median as a fraction of the median pass."""
        return self.kinds[kind].median_ms / self.total.median_ms

    def to_dict(self) -> dict[str, Any]:
        def brief(r: LatencyRecord) -> dict[str, Any]:
            return {"median_ms": r.median_ms, "iqr_ms": r.iqr_ms, "samples_ms": r.samples_ms}

        return {
            "label": self.label,
            "steps": self.total.steps,
            "fused": self.total.fused,
            "total": brief(self.total),
            "kinds": {k: {**brief(r), "share": self.share(k)} for k, r in self.kinds.items()},
            "conditions": self.total.conditions.to_dict(),
        }


def compare(a: Profile, b: Profile) -> dict[str, Comparison]:
    """Each kind of ``b`` against ``a`` (and the totals), noise marked by the latency rule."""
    deltas = {k: latency.compare(a.kinds[k], b.kinds[k]) for k in a.kinds}
    return {**deltas, TOTAL: latency.compare(a.total, b.total)}


def check(settings: LatencySettings) -> None:
    """Profiling runs torch eager on the CPU (see the module's notes)."""
    settings.check()
    if settings.device != "cpu" or settings.backend != "eager":
        raise RoadmapError(
            "roadmap profile splits torch eager's time on the CPU; use --device cpu "
            "(and `roadmap latency` for other devices and backends)"
        )


def profile(candidates: Sequence[Candidate], settings: LatencySettings) -> list[Profile]:
    """Profile several models interleaved, round by round; one :class:`Profile` each, in order."""
    check(settings)
    labels = [c.label for c in candidates]
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be unique, got {labels}")
    models = [c.model.eval() for c in candidates]
    generator = torch.Generator().manual_seed(settings.seed)
    x = torch.randn(settings.batch, 3, settings.img_size, settings.img_size, generator=generator)
    with latency.torch_threads(settings.threads) as threads, _hooked(models):
        watch = host.CpuWatch()
        passes = _profile_interleaved(models, x, settings)
        contention = watch.stop()
    conditions = dataclasses.replace(
        latency.conditions_of(settings, threads, len(candidates), contention),
        timer="torch.profiler ranges around every module, per forward pass (hooks included)",
    )
    return [_profile_of(c, p, conditions) for c, p in zip(candidates, passes, strict=True)]


def profile_selections(
    selections: Sequence[Any],
    settings: LatencySettings,
    *,
    fused: bool = True,
    num_classes: int = 1000,
) -> list[Profile]:
    """Build each selection (fused unless ``fused=False``) and profile them interleaved."""
    check(settings)  # before the builds
    candidates = latency.candidates_of(selections, fused=fused, num_classes=num_classes)
    return profile(candidates, settings)


def _profile_of(
    candidate: Candidate, passes: list[dict[str, float]], conditions: Conditions
) -> Profile:
    def record(name: str) -> LatencyRecord:
        samples = [p.get(name, 0.0) for p in passes]
        return latency.record_of(name, candidate.steps, candidate.fused, samples, conditions)

    total = dataclasses.replace(record(TOTAL), step=candidate.label)
    return Profile(candidate.label, total, {k: record(k) for k in (*KINDS, UNATTRIBUTED)})


@contextmanager
def _hooked(models: Sequence[nn.Module]) -> Iterator[None]:
    """Open a profiler range around every unit's forward; the hooks are removed afterwards."""
    handles = []
    open_ranges: list[Any] = []

    def enter(kind: str) -> Any:
        def hook(module: nn.Module, args: Any) -> None:
            scope = torch.profiler.record_function(_RANGE + kind)
            scope.__enter__()
            open_ranges.append(scope)

        return hook

    def leave(module: nn.Module, args: Any, output: Any) -> None:
        open_ranges.pop().__exit__(None, None, None)

    try:
        for model in models:
            for unit, module in units(model):
                handles.append(module.register_forward_pre_hook(enter(unit.kind)))
                handles.append(module.register_forward_hook(leave))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _profile_interleaved(
    models: list[nn.Module], x: torch.Tensor, settings: LatencySettings
) -> list[list[dict[str, float]]]:
    """Warm up, then profile one pass of every model per round in shuffled order; per model and
    pass, the milliseconds of every kind, ``other``, ``unattributed`` and the total."""
    runners = [lambda m=m: m(x) for m in models]
    with interleave.steady():
        interleave.warm_up(runners, settings.warmup, sync=lambda: None)
        activities = [torch.profiler.ProfilerActivity.CPU]
        with filtered_stderr(_PROFILER_CHATTER), warnings.catch_warnings():
            # torch 2.11 warns that events are kept per profiling cycle: we run one cycle
            warnings.filterwarnings("ignore", message=".*Profiler clears events")
            with torch.profiler.profile(activities=activities) as prof:
                for i in interleave.rounds(len(models), settings.iters, settings.seed):
                    with torch.profiler.record_function(f"{_RANGE}pass:{i}"):
                        runners[i]()
            events = prof.events()
    return _split(events, len(models))


def _split(events: Any, n_models: int) -> list[list[dict[str, float]]]:
    """Per model, per pass: the kinds' times from the ranges directly inside the pass."""
    passes: list[list[dict[str, float]]] = [[] for _ in range(n_models)]
    inside: dict[int, dict[str, float]] = {}
    for event in events:
        if event.name.startswith(f"{_RANGE}pass:"):
            times: dict[str, float] = defaultdict(float)
            times[TOTAL] = event.cpu_time_total / 1e3
            inside[id(event)] = times
            passes[int(event.name.rsplit(":", 1)[1])].append(times)
    for event in events:
        parent = event.cpu_parent
        if parent is None or id(parent) not in inside:
            continue
        times = inside[id(parent)]
        kind = event.name[len(_RANGE) :] if event.name.startswith(_RANGE) else "other"
        times[kind] += event.cpu_time_total / 1e3
    for model_passes in passes:
        for times in model_passes:
            attributed = sum(times[k] for k in KINDS)
            times[UNATTRIBUTED] = times[TOTAL] - attributed
    return passes
