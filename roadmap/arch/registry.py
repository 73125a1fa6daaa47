"""The step registry: strict (duplicates and unknown names raise) and ordered, per roadmap.

Every step belongs to a roadmap (:mod:`roadmap.arch.roadmaps`), named when it registers, and its
name is unique within it. The order does not depend on who was imported first: a roadmap's own
steps come in the order the roadmap lists, then every other step registered for it (a
``roadmap.steps`` entry point, a ``--plugin`` file, a module that calls :func:`register_step`
itself) in the order it was registered.

Every function that needs a roadmap takes one (a :class:`~roadmap.arch.roadmaps.Roadmap` or its
name) and has no default: the command line picks the default roadmap, nothing below it does.

A step that fails is reported as the step's failure, with where it came from: an exception
inside it, a return value that is not a :class:`NetSpec`, or a spec that does not validate
becomes one :class:`RoadmapError` line ("step boom (from plugin x.py) failed: ...").
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from roadmap.arch import paper
from roadmap.arch.paper import PaperResult
from roadmap.arch.roadmaps import ROADMAPS, Roadmap, get_roadmap, roadmap_names
from roadmap.arch.spec import NetSpec, replace, validate
from roadmap.errors import PreconditionError, RoadmapError
from roadmap.util.registry import ExitCalled, Registry, importing, shown

PLUGIN_PREFIX = "roadmap_plugin_"  # the module name a --plugin file is imported under


@dataclass(frozen=True)
class Step:
    """A registered roadmap step.

    Attributes:
        name: the CLI name, e.g. ``separate_mixers``.
        title: one line for tables.
        section: the paper section, e.g. ``§3.2``.
        fn: ``NetSpec -> NetSpec`` (a base step takes no spec and returns the starting network).
        base: whether this step creates the network rather than transforming it.
        roadmap: the roadmap it belongs to.

    What the paper measured after the step is in :mod:`roadmap.arch.paper` (:attr:`paper`).
    """

    name: str
    title: str
    section: str
    fn: Callable[..., NetSpec]
    base: bool = False
    roadmap: str = ""

    @property
    def network(self) -> str:
        """The name the roadmap up to this step is filed under (``convnext.gelu``)."""
        return get_roadmap(self.roadmap).network_name(self.name)

    @property
    def paper(self) -> PaperResult | None:
        """The paper's numbers for the roadmap up to this step, if it reports any."""
        return paper.reported(self.network)

    @property
    def lesson(self) -> str:
        """The step's lesson: its module docstring (what, why, what was measured, our choices)."""
        module = sys.modules.get(self.fn.__module__)
        return (module.__doc__ or "").strip() if module else ""

    @property
    def origin(self) -> str:
        """Where the step is defined: its module (``roadmap_steps.repvit.gelu``), or ``plugin
        x.py`` for a file loaded with ``--plugin``."""
        module = sys.modules.get(self.fn.__module__)
        file = Path(getattr(module, "__file__", None) or self.fn.__module__)
        if self.fn.__module__.startswith(PLUGIN_PREFIX):
            return f"plugin {file.name}"
        return self.fn.__module__

    def apply(self, spec: NetSpec | None) -> NetSpec:
        """Run the step on ``spec`` (None for a base step) and check what it returns.

        Raises:
            PreconditionError: a base step not first, or a transform with nothing to change.
            RoadmapError: the step raised, returned something that is not a spec, or returned
                a spec that does not validate (the message names the step and its origin).
        """
        if self.base and spec is not None:
            raise PreconditionError(f"{self.name} builds the starting network; it must come first")
        if not self.base and spec is None:
            base = get_roadmap(self.roadmap).base
            raise PreconditionError(f"{self.name} needs a network to change; start with {base}")
        where = f"step {self.name} (from {self.origin})"
        try:
            result = self.fn() if self.base else self.fn(spec)
        except RoadmapError:
            raise
        except (Exception, SystemExit) as e:  # someone's step code: that step's failure
            raise RoadmapError(f"{where} failed: {_what(e)}") from e
        if not isinstance(result, NetSpec):
            raise RoadmapError(
                f"{where} returned a value of type {type(result).__name__}, not a NetSpec"
            )
        try:
            return validate(result)
        except RoadmapError as e:
            raise RoadmapError(f"{where} made a spec that does not validate: {e}") from None


_STEPS: dict[str, Registry[Step]] = {}  # roadmap name -> its steps
PLUGINS: Registry[str] = Registry("plugin")  # module name -> path, of each --plugin loaded


def _steps_of(roadmap: str) -> Registry[Step]:
    if roadmap not in _STEPS:
        _STEPS[roadmap] = Registry("step", where=f" in roadmap {roadmap!r}")
    return _STEPS[roadmap]


def register_step(
    name: str,
    *,
    title: str,
    section: str,
    roadmap: str,
    paper_top1: float | None = None,
    paper_speed: float | None = None,
    paper_cost: float | None = None,
    paper_note: str = "",
    base: bool = False,
) -> Callable[[Callable[..., NetSpec]], Callable[..., NetSpec]]:
    """Decorator that registers a step function under ``name`` in ``roadmap`` (the name must
    be new there).

    ``paper_top1`` (the paper's accuracy, %), ``paper_speed`` (its speed column),
    ``paper_cost`` (its compute column, e.g. GFLOPs) and ``paper_note`` (how to read them) are
    what the paper reports for the roadmap up to this step, in the units the roadmap's columns
    name; they are filed in :mod:`roadmap.arch.paper` under that network's name.
    """
    if not isinstance(roadmap, str) or not roadmap.isidentifier():
        raise RoadmapError(f"step {name!r}: roadmap= must name a roadmap, got {roadmap!r}")

    def decorator(fn: Callable[..., NetSpec]) -> Callable[..., NetSpec]:
        step = Step(name, title, section, fn, base, roadmap)
        _steps_of(roadmap).register(name, step, owner=fn.__module__)
        if any(n is not None for n in (paper_top1, paper_speed, paper_cost)) or paper_note:
            result = PaperResult(paper_top1, paper_speed, paper_note, section, paper_cost)
            paper.report(_network_name(roadmap, name), result)
        return fn

    return decorator


def _network_name(roadmap: str, step: str) -> str:
    """The network the roadmap up to ``step`` is filed under (its package registers the
    roadmap before its steps; a step registered earlier is filed when the roadmap is)."""
    found = ROADMAPS._items.get(roadmap)
    if found is None:
        raise RoadmapError(
            f"step {step!r} reports the paper's numbers for roadmap {roadmap!r}, which is not "
            "registered yet: register the roadmap first"
        )
    return found.network_name(step)


def load_everything() -> None:
    """Load every installed roadmap package (each registers its roadmap and steps)."""
    ROADMAPS.load()


def load_plugin(path: str | Path) -> None:
    """Import a Python file, or a package's folder, that registers extra steps (``--plugin
    my_steps.py``, ``--plugin my_roadmap/``).

    A package is imported under its folder's name, so its modules import each other as in any
    package; a package imported already (say, installed and found by its entry point) is not
    imported twice. The code runs with the permissions of whoever runs ``roadmap``: load only
    what you trust.
    """
    load_everything()
    path = Path(path)
    if path.is_dir():
        name, init = path.resolve().name, path / "__init__.py"
        if not init.is_file():
            raise RoadmapError(f"plugin folder {path} is not a Python package (no __init__.py)")
        if not name.isidentifier():
            raise RoadmapError(f"plugin folder {path}: {name!r} cannot be a package's name")
        locations = [str(path.resolve())]
    elif path.is_file():
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        name, init, locations = f"{PLUGIN_PREFIX}{digest}", path, None
    else:
        raise RoadmapError(f"plugin file not found: {shown(str(path))}")
    if name in sys.modules:  # loaded already: loading is idempotent
        return
    where = str(path.resolve())
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=locations)
    if spec is None or spec.loader is None:
        raise RoadmapError(f"plugin {path} is not a Python file (it should end in .py)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        with importing(f"plugin {path}"):
            spec.loader.exec_module(module)
    except RoadmapError:
        del sys.modules[name]
        raise
    except (Exception, SystemExit) as e:  # a broken plugin is the user's file: say which, why
        del sys.modules[name]
        raise RoadmapError(f"plugin {path} failed to load: {_what(e)}") from e
    PLUGINS.register(name, where, owner=where)


def loaded_plugins() -> tuple[str, ...]:
    """The paths of the plugins :func:`load_plugin` loaded whose registrations are still in
    place (absolute, in load order): what a new process must load to know the same steps,
    roadmaps, block kinds, runtimes and data sources (``roadmap run --jobs``' workers do). A
    plugin whose registrations were removed since (a long-lived process that reset the
    registries) is left out."""
    from roadmap.util.registry import owners

    modules = owners()
    return tuple(
        PLUGINS.find(name) or ""
        for name in PLUGINS.names()
        if any(m == name or m.startswith(f"{name}.") for m in modules)
    )


def _what(e: BaseException) -> str:
    """What went wrong in someone's code, in words (an exit is no success: the command would
    end as if it had done its work)."""
    if isinstance(e, ExitCalled):
        return str(e)
    if isinstance(e, SystemExit):
        return f"it called exit({e.code!r}), which would end roadmap mid-command"
    return f"{type(e).__name__}: {e}"


def all_steps(roadmap: Roadmap | str) -> list[Step]:
    """A roadmap's registered steps: its own in order, then the others as registered."""
    load_everything()
    found = get_roadmap(roadmap)
    order = found.order
    registered = _steps_of(found.name).values()
    ranked = sorted(
        enumerate(registered),
        key=lambda item: (0, order.index(item[1].name)) if item[1].name in order else (1, item[0]),
    )
    return [step for _, step in ranked]


def list_steps(roadmap: Roadmap | str) -> list[str]:
    """A roadmap's registered step names, in order."""
    return [step.name for step in all_steps(roadmap)]


def paper_roadmap(roadmap: Roadmap | str) -> tuple[str, ...]:
    """A roadmap's own steps in order, whether or not they are loaded yet."""
    return get_roadmap(roadmap).order


def get_step(name: str, roadmap: Roadmap | str) -> Step:
    """The step called ``name`` in ``roadmap``; unknown names raise and list the known ones."""
    load_everything()
    found = get_roadmap(roadmap)
    steps = _steps_of(found.name)
    if name not in steps:
        elsewhere = [r for r in roadmap_names() if r != found.name and name in _steps_of(r)]
        if elsewhere:
            hint = " or ".join(f"--roadmap {r}" for r in elsewhere)
            raise RoadmapError(
                f"step {name!r} is not in the {found.name} roadmap but in "
                f"{', '.join(elsewhere)}'s: add {hint}"
            )
        known = list_steps(found)
        from roadmap.util.names import did_you_mean

        raise RoadmapError(
            f"unknown step {shown(name)!r} in roadmap {found.name!r}"
            f"{did_you_mean(str(name), known)}; known steps: " + ", ".join(known)
        )
    return steps.get(name)


def resolve_steps(
    upto: str | None = None,
    *,
    steps: Sequence[str] | None = None,
    skip: Iterable[str] = (),
    roadmap: Roadmap | str,
) -> list[str]:
    """The ordered list of steps to apply.

    Args:
        upto: apply the roadmap up to and including this step.
        steps: an explicit list instead (in the order given); the base step is added in front
            if missing.
        skip: names to leave out of the resolved list.
        roadmap: whose steps.

    Returns:
        Step names, base step first.
    """
    if upto is not None and steps is not None:
        raise RoadmapError("give either --upto or --steps, not both")
    if steps is not None:
        names = [get_step(n, roadmap).name for n in steps]
    elif upto is not None:
        known = list_steps(roadmap)
        names = known[: known.index(get_step(upto, roadmap).name) + 1]
    else:
        names = list(paper_roadmap(roadmap))
    skip = [get_step(n, roadmap).name for n in skip]
    for name in skip:
        if name not in names:
            raise RoadmapError(f"cannot skip {name!r}: it is not among the steps {names}")
        if get_step(name, roadmap).base:
            raise RoadmapError(f"cannot skip {name!r}: every network starts from it")
    names = [n for n in names if n not in skip]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RoadmapError(f"step(s) listed twice: {', '.join(dupes)}")
    late_base = [n for n in names[1:] if get_step(n, roadmap).base]
    if late_base:
        raise RoadmapError(
            f"{late_base[0]} builds the starting network: list it first, or leave it out "
            "(it is added in front)"
        )
    if not names or not get_step(names[0], roadmap).base:
        names.insert(0, get_roadmap(roadmap).base)
    return names


def apply_steps(
    names: Sequence[str], roadmap: Roadmap | str, start: NetSpec | None = None
) -> NetSpec:
    """Apply steps in order to ``start`` (None: the first step must build the network)."""
    spec = start
    for name in names:
        spec = get_step(name, roadmap).apply(spec)
    if spec is None:
        raise RoadmapError("no step was given and no spec to start from")
    return spec


def build_spec(
    upto: str | None = None,
    *,
    steps: Sequence[str] | None = None,
    skip: Iterable[str] = (),
    num_classes: int = 1000,
    roadmap: Roadmap | str,
) -> NetSpec:
    """The spec after applying the resolved steps, with ``num_classes`` outputs."""
    names = resolve_steps(upto, steps=steps, skip=skip, roadmap=roadmap)
    spec = apply_steps(names, roadmap=roadmap)
    return validate(replace(spec, num_classes=num_classes))
