"""Roadmaps: a paper's way from one network to another, one design change at a time, as a value.

A :class:`Roadmap` names its paper, its steps in order (the first builds the starting network),
what the paper measured after each step (its columns: an accuracy, and a speed or a cost, with
their units and conditions), and the package that holds its steps. The RepViT paper's roadmap
(MobileNetV3-L to RepViT-M0.9, ``steps/``) is the default; ConvNeXt's (ResNet-50 to ConvNeXt-T,
``steps/convnext/``) is the second built-in; a plugin registers its own with
:func:`register_roadmap` and steps with ``register_step(..., roadmap=NAME)``.

Step names are unique within a roadmap, not across roadmaps: both papers have a ``gelu`` step.
Network names carry the roadmap wherever two could meet: the default roadmap's networks keep
their bare names (``widen``, as before roadmaps existed), every other roadmap's are prefixed
(``convnext.patchify_stem``), so results folders, tables and timm names never mix them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from roadmap.arch.paper import PaperResult
from roadmap.errors import RoadmapError
from roadmap.util.names import did_you_mean

DEFAULT = "repvit"
# The roadmaps that ship with the tool: name -> the package whose import registers it.
BUILT_IN = {"repvit": "steps", "convnext": "steps.convnext"}
SEPARATOR = "."  # between a roadmap's name and a network's: convnext.patchify_stem


@dataclass(frozen=True)
class PaperColumn:
    """One of the numbers a paper reports after each step.

    Attributes:
        label: the column's name in tables (``paper top-1 %``).
        unit: its unit (``%``, ``ms``, ``GFLOPs``).
        conditions: what it was measured on (``ImageNet-1K, no distillation, 300 epochs``).
        lower_is_better: whether a smaller number is the better one (latency, FLOPs).
    """

    label: str
    unit: str
    conditions: str
    lower_is_better: bool = False


@dataclass(frozen=True)
class Roadmap:
    """A paper's roadmap.

    Attributes:
        name: the ``--roadmap`` name (a Python identifier).
        title: one line: from which network to which.
        citation: the paper (authors, title, venue, arXiv id).
        package: the Python package whose import registers the steps (and the roadmap).
        order: the paper's steps in order; the first builds the starting network.
        accuracy: the paper's accuracy column.
        speed: its speed column (latency or throughput), or None when it reports none per step.
        cost: its compute column (e.g. GFLOPs), or None.
        references: the timm models the first and last steps equal (their weights load with
            ``--pretrained``): step name -> timm model name.
    """

    name: str
    title: str
    citation: str
    package: str
    order: tuple[str, ...]
    accuracy: PaperColumn
    speed: PaperColumn | None = None
    cost: PaperColumn | None = None
    references: tuple[tuple[str, str], ...] = ()

    @property
    def side(self) -> PaperColumn | None:
        """The paper's column beside its accuracy in tables and lessons: its speed, or its
        compute cost where it reports no speed per step (ConvNeXt's GFLOPs)."""
        return self.speed or self.cost

    def side_of(self, result: PaperResult | None) -> float | None:
        """The value of :attr:`side` in one of the paper's results."""
        if result is None or self.side is None:
            return None
        return result.latency_ms if self.speed is not None else result.cost

    @property
    def base(self) -> str:
        """The step that builds the starting network."""
        return self.order[0]

    def network_name(self, name: str) -> str:
        """A network's name as it is filed: bare for the default roadmap, else prefixed."""
        return name if self.name == DEFAULT else f"{self.name}{SEPARATOR}{name}"


_ROADMAPS: dict[str, Roadmap] = {}


def register_roadmap(roadmap: Roadmap) -> Roadmap:
    """Make a roadmap known (its name must be new, and an identifier); returns it."""
    if roadmap.name in _ROADMAPS:
        raise RoadmapError(f"roadmap {roadmap.name!r} is already registered; pick a new name")
    if not roadmap.name.isidentifier():
        raise RoadmapError(f"roadmap name {roadmap.name!r} must be a Python identifier")
    if not roadmap.order:
        raise RoadmapError(f"roadmap {roadmap.name!r} has no steps")
    _ROADMAPS[roadmap.name] = roadmap
    return roadmap


def get_roadmap(name: str = DEFAULT) -> Roadmap:
    """The roadmap called ``name`` (a built-in one is loaded on first use); an unknown name
    raises and lists the known ones."""
    if name not in _ROADMAPS and name in BUILT_IN:
        importlib.import_module(BUILT_IN[name])
    if name not in _ROADMAPS:
        from roadmap.arch import registry  # plugins' roadmaps register when steps load

        registry.load_everything()
    if name not in _ROADMAPS:
        known = roadmap_names()
        raise RoadmapError(
            f"unknown roadmap {name!r}{did_you_mean(name, known)}; installed: {', '.join(known)}"
        )
    return _ROADMAPS[name]


def roadmap_names() -> list[str]:
    """Every installed roadmap: the built-in ones first, then the plugins' as registered."""
    for package in BUILT_IN.values():
        importlib.import_module(package)
    return sorted(_ROADMAPS, key=lambda n: (n not in BUILT_IN, list(_ROADMAPS).index(n)))


def split_name(name: str) -> tuple[str, str]:
    """``convnext.gelu`` -> (``convnext``, ``gelu``); a bare name is the default roadmap's."""
    head, dot, rest = name.partition(SEPARATOR)
    if dot and head.isidentifier() and not head.startswith("spec-"):
        return head, rest
    return DEFAULT, name
