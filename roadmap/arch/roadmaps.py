"""Roadmaps: a paper's way from one network to another, one design change at a time, as a value.

A :class:`Roadmap` names its paper, its steps in order (the first builds the starting network),
what the paper measured after each step (its columns: an accuracy, and a speed or a cost, with
their units and conditions), the timm models its ends equal, its family of sizes, and the
package that holds its steps. Every roadmap is such a package, found the same way: the
``roadmap.steps`` entry point of an installed distribution (this project declares its own,
RepViT's and ConvNeXt's, in its ``pyproject.toml``) or a ``--plugin`` folder. Importing the
package registers the roadmap with :func:`register_roadmap` and its steps with
``register_step(..., roadmap=NAME)``. Nothing here knows any roadmap by name.

Step names are unique within a roadmap, not across roadmaps: both RepViT and ConvNeXt have a
``gelu`` step. Network names carry the roadmap wherever two could meet: a roadmap's networks
are prefixed with its name (``convnext.patchify_stem``), so results folders, tables and timm
names never mix them; one roadmap may keep bare names (:attr:`Roadmap.bare_names`: RepViT's,
whose results were filed before roadmaps had names).
"""

from __future__ import annotations

from dataclasses import dataclass

from roadmap.arch.family import Size
from roadmap.arch.paper import PaperResult
from roadmap.errors import RoadmapError
from roadmap.util.registry import ExitCalled, Registry, importing

SEPARATOR = "."  # between a roadmap's name and a network's: convnext.patchify_stem
ENTRY_POINTS = "roadmap.steps"  # the entry-point group a roadmap package is declared in


@dataclass(frozen=True)
class PaperColumn:
    """One of the numbers a paper reports after each step.

    Attributes:
        label: the column's name in tables (``paper top-1 %``).
        unit: its unit (``%``, ``ms``, ``GFLOPs``, ``images/s``).
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
        family: the sizes the paper scaled the roadmap's result to (``--size``), or () when it
            has none.
        label: how prose names it (``RepViT``); the name when empty.
        bare_names: its networks are filed under bare step names (``widen``) rather than
            prefixed ones (``convnext.widen``). At most one roadmap may: RepViT's, whose
            results were filed before a second roadmap existed.
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
    family: tuple[Size, ...] = ()
    label: str = ""
    bare_names: bool = False

    @property
    def side(self) -> PaperColumn | None:
        """The paper's column beside its accuracy in tables and lessons: its speed, or its
        compute cost where it reports no speed per step (ConvNeXt's GFLOPs)."""
        return self.speed or self.cost

    def side_of(self, result: PaperResult | None) -> float | None:
        """The value of :attr:`side` in one of the paper's results."""
        if result is None or self.side is None:
            return None
        return result.speed if self.speed is not None else result.cost

    @property
    def base(self) -> str:
        """The step that builds the starting network."""
        return self.order[0]

    @property
    def display(self) -> str:
        """The name prose uses."""
        return self.label or self.name

    def network_name(self, name: str) -> str:
        """A network's name as it is filed: prefixed with the roadmap's (bare for one)."""
        return name if self.bare_names else f"{self.name}{SEPARATOR}{name}"

    def option(self) -> str:
        """The ``--roadmap`` option that selects it in a suggested command ("" for the roadmap
        with bare names, which is the command line's default)."""
        return "" if self.bare_names else f" --roadmap {self.name}"

    def size(self, label: str) -> Size | None:
        """The family member called ``label``, or None."""
        return next((s for s in self.family if s.label == label), None)


def _load_installed() -> None:
    """Import every installed roadmap package (each registers itself)."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINTS):
        try:
            with importing(f"the {ENTRY_POINTS} entry point {ep.name} ({ep.value})"):
                ep.load()
        except RoadmapError:
            raise
        except (Exception, SystemExit) as e:
            raise RoadmapError(
                f"the {ENTRY_POINTS} entry point {ep.name} ({ep.value}) failed to load: "
                + (str(e) if isinstance(e, ExitCalled) else f"{type(e).__name__}: {e}")
            ) from e


ROADMAPS: Registry[Roadmap] = Registry("roadmap", loader=_load_installed)


def register_roadmap(roadmap: Roadmap) -> Roadmap:
    """Make a roadmap known (its name must be new, and an identifier); returns it."""
    if not roadmap.order:
        raise RoadmapError(f"roadmap {roadmap.name!r} has no steps")
    bare = [r.name for r in ROADMAPS._items.values() if r.bare_names and r.name != roadmap.name]
    if roadmap.bare_names and bare:
        raise RoadmapError(
            f"roadmap {roadmap.name!r} asks for bare network names, which {bare[0]!r} has"
        )
    return ROADMAPS.register(roadmap.name, roadmap, owner=roadmap.package)


NOT_INSTALLED = (
    "; a roadmap package is found once installed (pip install -e PATH, its pyproject "
    "declaring a roadmap.steps entry point) or with --plugin PATH"
)


def get_roadmap(roadmap: Roadmap | str) -> Roadmap:
    """The roadmap called ``roadmap`` (a :class:`Roadmap` is returned as it is); an unknown
    name raises, lists the installed ones and says how a roadmap gets installed."""
    if isinstance(roadmap, Roadmap):
        return roadmap
    return ROADMAPS.get(roadmap, hint=NOT_INSTALLED)


def roadmap_names() -> list[str]:
    """Every installed roadmap, in the order they registered."""
    return ROADMAPS.names()


def bare_roadmap() -> Roadmap | None:
    """The roadmap whose networks keep bare names, if one is installed."""
    return next((r for r in ROADMAPS.values() if r.bare_names), None)


def split_name(name: str) -> tuple[Roadmap, str]:
    """``convnext.gelu`` -> (ConvNeXt's roadmap, ``gelu``); a bare name is the roadmap's with
    bare names."""
    head, dot, rest = name.partition(SEPARATOR)
    if dot and head.isidentifier():
        return get_roadmap(head), rest
    bare = bare_roadmap()
    if bare is None:
        raise RoadmapError(f"{name!r} names no roadmap (write it ROADMAP.{name})")
    return bare, name
