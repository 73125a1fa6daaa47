"""Agreement with the paper: do our step-to-step changes go the way the paper's did?

For a column the paper reports per step (a latency, a top-1), a change between consecutive
networks counts when both have both numbers, ours is outside our noise (latency: below the
pooled IQR; top-1: not a finding of Welch's t-test) and the paper's is not zero; the share of
those whose sign is the paper's, and Spearman's rank correlation over every network both have,
say how well the shape of our roadmap matches the paper's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from roadmap.measure.latency import LatencyRecord, compare
from roadmap.study import stats


@dataclass(frozen=True)
class PaperAgreement:
    """How well our step-to-step changes agree with one of the paper's columns: its latency
    (against our fused latency), or its top-1 (against our trained top-1 on whatever data the
    table reads).

    Attributes:
        same_sign: our Δs outside the noise whose sign is the paper's.
        counted: our Δs outside the noise where the paper gives both steps and a change (the
            denominator).
        within_noise: such step pairs whose Δ is within our noise (latency: below the pooled
            IQR; top-1: not significant in Welch's t-test at p < 0.05): left out, not
            disagreements.
        rho: Spearman's rank correlation of ours with the paper's over the steps both have
            (None with fewer than 3).
        steps: how many steps both have.
        what: what is compared (``latency``, ``top-1``).
        column: the paper's column, as its roadmap names it (``paper ms: iPhone 12, Core ML,
            batch 1``); "" when not given.
    """

    same_sign: int
    counted: int
    within_noise: int
    rho: float | None
    steps: int
    what: str = "latency"
    column: str = ""

    def describe(self) -> str:
        """One line for captions: 'Agreement with the paper's latency (paper ms: iPhone 12,
        ...): Δ sign 5/7 steps; ...'."""
        unit = "steps" if self.what == "latency" else "findings"
        signs = f"Δ sign {self.same_sign}/{self.counted} {unit}"
        if self.within_noise:
            signs += f" ({self.within_noise} more within noise, not counted)"
        rho = "n/a" if self.rho is None else f"{self.rho:+.2f}"
        column = f" ({self.column})" if self.column else ""
        return (
            f"Agreement with the paper's {self.what}{column}: {signs}; "
            f"Spearman ρ {rho} over {self.steps} steps"
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def paper_agreement(
    records: Sequence[LatencyRecord | None], paper_ms: Sequence[float | None], column: str = ""
) -> PaperAgreement | None:
    """Compare consecutive rows' latency changes with the paper's (None if fewer than 2 rows
    carry both numbers). A change counts when both rows and the row before have both numbers;
    our noise rule (:func:`roadmap.measure.latency.compare`) decides which changes are left out."""
    if len(records) != len(paper_ms):
        raise ValueError("one paper latency (or None) per record")
    ours = [r.median_ms if r else None for r in records]

    def change(i: int) -> tuple[float, bool]:
        c = compare(records[i - 1], records[i])
        return c.delta_ms, c.noise

    return agreement(ours, paper_ms, change, "latency", column)


def agreement(
    ours: Sequence[float | None],
    paper: Sequence[float | None],
    change: Callable[[int], tuple[float, bool]],
    what: str,
    column: str = "",
) -> PaperAgreement | None:
    """Count the consecutive changes whose sign is the paper's: a change counts when both
    rows have both numbers, ours is outside the noise (``change(i)``: our Δ from row i - 1 to
    i, and whether it is noise) and the paper's is not zero."""
    both = [i for i, (a, b) in enumerate(zip(ours, paper, strict=True)) if a is not None and b]
    if len(both) < 2:
        return None
    same = counted = noisy = 0
    for i in both:
        if i - 1 not in both or paper[i] == paper[i - 1]:
            continue
        delta, noise = change(i)
        if noise:
            noisy += 1
            continue
        counted += 1
        same += (delta > 0) == (paper[i] > paper[i - 1])
    rho = stats.spearman([ours[i] for i in both], [paper[i] for i in both])
    return PaperAgreement(same, counted, noisy, rho, len(both), what, column)
