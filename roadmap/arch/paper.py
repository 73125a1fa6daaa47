"""What the paper reports, network by network: the one table that every table, plot and lesson
reads its paper columns from.

A paper reports numbers for networks: the roadmap after each of its steps, the control
experiments it ran beside the roadmap, and the family it scaled the result to. Each is filed
here under the network's one name (:attr:`roadmap.arch.selection.Selection.name`): ``gelu``,
``widen-separate_mixers`` (the RepViT paper's control), ``alternating_se@m1_5`` (a family
member). A step's own numbers come with it (``register_step(..., paper_top1=...)``); the
paper's other networks are reported by the package that holds its roadmap (``steps``).
"""

from __future__ import annotations

from dataclasses import dataclass

from roadmap.errors import RoadmapError


@dataclass(frozen=True)
class PaperResult:
    """The paper's numbers for one network.

    Attributes:
        top1: ImageNet-1K top-1 (%), or None where the paper gives none.
        latency_ms: iPhone 12 latency (ms, Core ML), or None.
        note: how to read the numbers (derived from the text, unconfirmed, ...), or "".
        source: where in the paper they are (``§3.2``, ``Table 2``).
        cost: the paper's compute column (ConvNeXt's GFLOPs), or None.

    ``latency_ms`` is the paper's speed column and ``cost`` its compute column; the roadmap
    (:mod:`roadmap.arch.roadmaps`) says what each means, in which unit, measured how.
    """

    top1: float | None = None
    latency_ms: float | None = None
    note: str = ""
    source: str = ""
    cost: float | None = None


_RESULTS: dict[str, PaperResult] = {}


def report(name: str, result: PaperResult) -> None:
    """File the paper's numbers for the network called ``name`` (once: a second report of the
    same network is an error, never an overwrite)."""
    if name in _RESULTS and _RESULTS[name] != result:
        raise RoadmapError(f"the paper's numbers for {name!r} are already reported")
    _RESULTS[name] = result


def reported(name: str) -> PaperResult | None:
    """The numbers filed under a network's (or a step's) name, or None. (The steps package
    files its numbers when the registry loads it; :attr:`Selection.paper
    <roadmap.arch.selection.Selection.paper>` looks a network up.)"""
    return _RESULTS.get(name)
