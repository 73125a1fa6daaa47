"""What a study compares: the sets of networks, and the (network, seed) runs that train them.

- :func:`prefixes`: the network after each step of a selection (the roadmap, step by step);
- :func:`leave_one_out` / :func:`only_one`: the roadmap with each step left out, or each step
  alone on the baseline (a step whose precondition is missing is a :class:`Variant` with the
  reason it cannot be built, so tables can say so);
- :func:`family`: the roadmap's end at each of the paper's sizes; :func:`every_step`: one
  network per registered step;
- :func:`runs`: every (network, seed) of a sweep, numbered in a fixed order, and
  :func:`shard`: the runs shard ``k`` of ``n`` trains (the one sharding rule: a sweep with
  ``--shard`` and the cluster launcher both use it).
"""

from __future__ import annotations

from dataclasses import dataclass

from roadmap.arch import registry
from roadmap.arch.roadmaps import Roadmap, get_roadmap
from roadmap.arch.selection import Selection
from roadmap.errors import PreconditionError, RoadmapError


@dataclass(frozen=True)
class Variant:
    """A network to compare, or the reason it cannot be built.

    Attributes:
        selection: the network.
        about: the roadmap step the row is about (the paper's numbers come from it).
        reason: why it cannot be built (a step's precondition), or "" when it can.
    """

    selection: Selection
    about: str
    reason: str = ""

    @property
    def name(self) -> str:
        return self.selection.name

    @property
    def buildable(self) -> bool:
        return not self.reason


def variant(selection: Selection, about: str | None = None) -> Variant:
    """A variant, with the precondition error as its reason when it cannot be built."""
    try:
        selection.spec()
    except PreconditionError as e:
        return Variant(selection, about or selection.about, reason=str(e))
    return Variant(selection, about or selection.about)


def prefixes(selection: Selection) -> list[Variant]:
    """Every prefix of a selection: the network after each of its steps (and its start)."""
    first = 0 if selection.start is not None else 1
    return [variant(selection.prefix(n)) for n in range(first, len(selection.steps) + 1)]


def leave_one_out(roadmap: Roadmap | str, upto: str | None = None) -> list[Variant]:
    """The roadmap (up to ``upto``), then the same with each of its steps left out."""
    full = registry.resolve_steps(upto, roadmap=roadmap)
    out = [variant(Selection(tuple(full), roadmap=roadmap))]
    for name in full[1:]:
        chosen = Selection(tuple(s for s in full if s != name), roadmap=roadmap)
        out.append(variant(chosen, about=name))
    return out


def only_one(roadmap: Roadmap | str, upto: str | None = None) -> list[Variant]:
    """The baseline, then the baseline with each single step of the roadmap applied alone."""
    full = registry.resolve_steps(upto, roadmap=roadmap)
    out = [variant(Selection((full[0],), roadmap=roadmap))]
    out += [variant(Selection((full[0], name), roadmap=roadmap)) for name in full[1:]]
    return out


def family(roadmap: Roadmap | str) -> list[Variant]:
    """A roadmap's family (RepViT's M0.6 ... M2.3): its whole roadmap at each of the paper's
    sizes (none for a roadmap without a family)."""
    found = get_roadmap(roadmap)
    full = tuple(found.order)
    return [variant(Selection(full, found, size=size), about=size.label) for size in found.family]


def every_step(roadmap: Roadmap | str) -> list[Selection]:
    """One selection per registered step of a roadmap: the roadmap up to and including it."""
    return [
        Selection(tuple(registry.resolve_steps(upto=n, roadmap=roadmap)), roadmap=roadmap)
        for n in registry.list_steps(roadmap)
    ]


ABLATIONS = ("leave_one_out", "only_one")


def variants(network: Selection, ablation: str | None = None) -> list[Variant]:
    """What ``roadmap run`` trains: every prefix of ``network``, or (``ablation``) the
    leave-one-out or only-one set of the roadmap up to its last step, as ``roadmap ablate``
    compares them."""
    if ablation is None:
        return prefixes(network)
    if ablation not in ABLATIONS:
        raise RoadmapError(f"unknown ablation {ablation!r}; use one of {', '.join(ABLATIONS)}")
    if not network.is_roadmap_prefix:
        raise RoadmapError(
            "--leave-one-out / --only-one ablate a roadmap prefix: use --upto, not "
            "--steps, --skip or --spec"
        )
    sets = {"leave_one_out": leave_one_out, "only_one": only_one}
    return sets[ablation](network.roadmap, network.steps[-1])


@dataclass(frozen=True)
class PlannedRun:
    """One (network, seed) of a sweep, and its place in the plan."""

    index: int
    network: Selection
    seed: int


def runs(selections: list[Selection], seeds: tuple[int, ...]) -> list[PlannedRun]:
    """Every (network, seed), seed-major (seed 0 of every network first), numbered."""
    pairs = [(n, s) for s in seeds for n in selections]
    return [PlannedRun(i, n, s) for i, (n, s) in enumerate(pairs)]


def shard(planned: list[PlannedRun], k: int, n: int) -> list[PlannedRun]:
    """The runs shard ``k`` of ``n`` trains: every n-th, starting at k."""
    return [p for p in planned if p.index % n == k]
