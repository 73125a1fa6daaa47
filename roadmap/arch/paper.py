"""What the paper reports, network by network: the one table that every table, plot and lesson
reads its paper columns from.

A paper reports numbers for networks: the roadmap after each of its steps, the control
experiments it ran beside the roadmap, and the family it scaled the result to. Each is filed
here under the network's one name (:attr:`roadmap.arch.selection.Selection.name`): ``gelu``,
``widen-separate_mixers`` (the RepViT paper's control), ``alternating_se@m1_5`` (a family
member). A step's own numbers come with it (``register_step(..., paper_top1=...)``); the
paper's other networks are reported by the package that holds its roadmap.
"""

from __future__ import annotations

from dataclasses import dataclass

from roadmap.util.registry import Registry


@dataclass(frozen=True)
class PaperResult:
    """The paper's numbers for one network.

    Attributes:
        top1: the paper's accuracy column (top-1, %), or None where the paper gives none.
        speed: its speed column (RepViT's iPhone 12 ms, or images/s), or None.
        note: how to read the numbers (derived from the text, unconfirmed, ...), or "".
        source: where in the paper they are (``§3.2``, ``Table 2``).
        cost: its compute column (ConvNeXt's GFLOPs), or None.

    The numbers carry no units of their own: the roadmap's columns
    (:class:`~roadmap.arch.roadmaps.PaperColumn`) say what each means, in which unit, measured
    how.
    """

    top1: float | None = None
    speed: float | None = None
    note: str = ""
    source: str = ""
    cost: float | None = None


RESULTS: Registry[PaperResult] = Registry(
    "paper result", check_name=lambda name: bool(name), rule="a network's name", same_again=True
)


def report(name: str, result: PaperResult) -> None:
    """File the paper's numbers for the network called ``name`` (once: a second report of other
    numbers for the same network is an error, never an overwrite)."""
    RESULTS.register(name, result)


def reported(name: str) -> PaperResult | None:
    """The numbers filed under a network's (or a step's) name, or None. (A roadmap's package
    files its numbers when it loads; :attr:`Selection.paper
    <roadmap.arch.selection.Selection.paper>` looks a network up.)"""
    return RESULTS.find(name)
