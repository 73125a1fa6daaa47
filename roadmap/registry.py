"""The step registry: strict (duplicates and unknown names raise) and ordered.

Registration order is roadmap order. The paper's steps register when the ``steps`` package is
imported (``steps/__init__.py`` holds their order); third-party steps register afterwards,
from the ``roadmap.steps`` entry-point group or a plugin file, and so come after them.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from roadmap.errors import RoadmapError
from roadmap.spec import NetSpec, replace, validate

BASE_STEP = "mobilenetv3_large"


class PreconditionError(RoadmapError):
    """A step was applied to a spec that lacks what it changes (names the missing step)."""


def require_stages(spec: NetSpec, count: int, step: str, what: str) -> None:
    """Raise PreconditionError unless ``spec`` has ``count`` stages (``step`` sets ``what``)."""
    if len(spec.stages) != count:
        raise PreconditionError(
            f"{step} sets {count} stage {what}; this network has {len(spec.stages)} stages"
        )


@dataclass(frozen=True)
class Step:
    """A registered roadmap step.

    Attributes:
        name: the CLI name, e.g. ``separate_mixers``.
        title: one line for tables.
        section: the paper section, e.g. ``§3.2``.
        fn: ``NetSpec -> NetSpec`` (a base step takes no spec and returns the starting network).
        paper_top1: ImageNet-1K top-1 (%) the paper reports after this step, if it reports one.
        paper_latency_ms: iPhone 12 latency (ms) the paper reports after this step, if any.
        paper_note: how to read the paper numbers (derived, unconfirmed, ...), or "".
        base: whether this step creates the network rather than transforming it.
    """

    name: str
    title: str
    section: str
    fn: Callable[..., NetSpec]
    paper_top1: float | None = None
    paper_latency_ms: float | None = None
    paper_note: str = ""
    base: bool = False

    @property
    def lesson(self) -> str:
        """The step's lesson: its module docstring (what, why, what was measured, our choices)."""
        module = sys.modules.get(self.fn.__module__)
        return (module.__doc__ or "").strip() if module else ""

    def apply(self, spec: NetSpec | None) -> NetSpec:
        """Run the step; a base step must come first, a transform must not."""
        if self.base:
            if spec is not None:
                raise PreconditionError(
                    f"{self.name} builds the starting network; it must come first"
                )
            return self.fn()
        if spec is None:
            raise PreconditionError(
                f"{self.name} needs a network to change; start with {BASE_STEP}"
            )
        return self.fn(spec)


_REGISTRY: dict[str, Step] = {}
_loaded = False


def register_step(
    name: str,
    *,
    title: str,
    section: str,
    paper_top1: float | None = None,
    paper_latency_ms: float | None = None,
    paper_note: str = "",
    base: bool = False,
) -> Callable[[Callable[..., NetSpec]], Callable[..., NetSpec]]:
    """Decorator that registers a step function under ``name`` (which must be new)."""

    def decorator(fn: Callable[..., NetSpec]) -> Callable[..., NetSpec]:
        if name in _REGISTRY:
            owner = _REGISTRY[name].fn.__module__
            raise RoadmapError(f"step {name!r} is already registered (by {owner}); pick a new name")
        _REGISTRY[name] = Step(
            name, title, section, fn, paper_top1, paper_latency_ms, paper_note, base
        )
        return fn

    return decorator


def _ensure_loaded() -> None:
    """Import the paper's steps, then any installed ``roadmap.steps`` entry points."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    importlib.import_module("steps")
    from importlib.metadata import entry_points

    for ep in entry_points(group="roadmap.steps"):
        ep.load()


def load_plugin(path: str | Path) -> None:
    """Import a Python file that registers extra steps (``--plugin my_steps.py``)."""
    _ensure_loaded()
    path = Path(path)
    if not path.is_file():
        raise RoadmapError(f"plugin file not found: {path}")
    name = f"roadmap_plugin_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
    if name in sys.modules:  # this file was loaded already: loading is idempotent
        return
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except RoadmapError:
        del sys.modules[name]
        raise
    except Exception as e:  # a broken plugin is the user's file: say which and why
        del sys.modules[name]
        raise RoadmapError(f"plugin {path} failed to load: {type(e).__name__}: {e}") from e


def get_step(name: str) -> Step:
    """The step called ``name``; unknown names raise and list the known ones."""
    _ensure_loaded()
    if name not in _REGISTRY:
        raise RoadmapError(f"unknown step {name!r}; known steps: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def list_steps() -> list[str]:
    """All registered step names, in roadmap order."""
    _ensure_loaded()
    return list(_REGISTRY)


def all_steps() -> list[Step]:
    """All registered steps, in roadmap order."""
    _ensure_loaded()
    return list(_REGISTRY.values())


def resolve_steps(
    upto: str | None = None,
    *,
    steps: Sequence[str] | None = None,
    skip: Iterable[str] = (),
) -> list[str]:
    """The ordered list of steps to apply.

    Args:
        upto: apply the roadmap up to and including this step.
        steps: an explicit list instead (in the order given); the base step is added in front
            if missing.
        skip: names to leave out of the resolved list.

    Returns:
        Step names, base step first.
    """
    if upto is not None and steps is not None:
        raise RoadmapError("give either --upto or --steps, not both")
    known = list_steps()
    if steps is not None:
        names = [get_step(n).name for n in steps]
    elif upto is not None:
        names = known[: known.index(get_step(upto).name) + 1]
    else:
        names = [s.name for s in all_steps() if s.name in _paper_roadmap()]
    skip = [get_step(n).name for n in skip]
    for name in skip:
        if name not in names:
            raise RoadmapError(f"cannot skip {name!r}: it is not among the steps {names}")
        if get_step(name).base:
            raise RoadmapError(f"cannot skip {name!r}: every network starts from it")
    names = [n for n in names if n not in skip]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RoadmapError(f"step(s) listed twice: {', '.join(dupes)}")
    if not names or not get_step(names[0]).base:
        names.insert(0, BASE_STEP)
    return names


def _paper_roadmap() -> tuple[str, ...]:
    return importlib.import_module("steps").ROADMAP


def build_spec(
    upto: str | None = None,
    *,
    steps: Sequence[str] | None = None,
    skip: Iterable[str] = (),
    num_classes: int = 1000,
) -> NetSpec:
    """The spec after applying the resolved steps, with ``num_classes`` outputs."""
    spec = None
    for name in resolve_steps(upto, steps=steps, skip=skip):
        spec = get_step(name).apply(spec)
    return validate(replace(spec, num_classes=num_classes))
