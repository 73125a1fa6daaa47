"""Families: a roadmap's result at other sizes, from the same spec.

Papers scale the network their roadmap ends at: RepViT's family (M0.6 ... M2.3) and ConvNeXt's
(T, S, B, L) differ from the roadmap's end only in stage widths, stage depths and the stem's
widths. A :class:`Size` is exactly that pair of tuples; :func:`scale` applies it to any
four-stage spec. A roadmap's package lists its family (``Roadmap.family``); a roadmap without
one takes no ``--size``.

A size is an *option* of the network selection (``--size m1_5``, ``--size w1.25d1.5``), not a
roadmap step: the roadmap ends at one size, and the paper scales its result afterwards. So any
command takes it, the network's name says it (``alternating_se@m1_5``), and scaling a prefix
other than the last is allowed (``widen@w1.5d1``) where a researcher wants it.

What scaling does to a spec:

- stage widths are set (downsampling units included: the pre-block keeps the previous stage's
  width, as ``roadmap.arch.edit.set_widths`` does), and each stem layer is scaled by the same
  factor as stage 1 (RepViT's stem is C1/2, C1; ConvNeXt's patchify stem is C1);
- stage depths are set (``set_depths`` repeats a stage's last block, or drops from the end);
- when a stage's SE pattern alternates (the ``alternating_se`` step), it is re-applied to the
  new depth (SE on the 1st, 3rd, 5th... block), as the official configs do; otherwise the
  repeated blocks copy the last one.

With multipliers, widths are rounded to a multiple of 8 (timm's rule) and depths to the
nearest whole block (at least one).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from roadmap.arch.anatomy import make_divisible
from roadmap.arch.edit import alternate, map_stages, require_stages, set_depths, set_widths
from roadmap.arch.spec import NetSpec, StageSpec, replace
from roadmap.errors import RoadmapError
from roadmap.util.names import did_you_mean
from roadmap.util.registry import shown


@dataclass(frozen=True)
class Size:
    """A network size.

    Attributes:
        label: its name (``m1_5``) or its multipliers (``w1.25d1.5``).
        widths: the four stage widths, or None to scale by ``width_mult``.
        depths: the four stage depths, or None to scale by ``depth_mult``.
        width_mult: width multiplier (used when ``widths`` is None).
        depth_mult: depth multiplier (used when ``depths`` is None).
        timm_name: timm's model with exactly this architecture, if there is one.

    What the paper reports for each size is in :mod:`roadmap.arch.paper`.
    """

    label: str
    widths: tuple[int, ...] | None = None
    depths: tuple[int, ...] | None = None
    width_mult: float = 1.0
    depth_mult: float = 1.0
    timm_name: str | None = None


_MULTIPLIERS = re.compile(r"^w(\d+(?:\.\d+)?)d(\d+(?:\.\d+)?)$")


def parse_size(text: str, family: Sequence[Size], roadmap: str) -> Size:
    """``m1_5`` (a member of ``family``, ``roadmap``'s) or ``w1.25d1.5`` (width and depth
    multipliers); a roadmap without a family takes neither."""
    if not family:
        raise RoadmapError(
            f"--size {shown(text)}: the {roadmap} roadmap has no family (its paper scaled "
            "nothing), so there is no size to choose"
        )
    labels = [s.label for s in family]
    if text in labels:
        return family[labels.index(text)]
    match = _MULTIPLIERS.match(text)
    if not match:
        raise RoadmapError(
            f"unknown size {shown(text)!r}{did_you_mean(text, labels)}: {roadmap}'s family is "
            f"{', '.join(labels)}; or wWdD multipliers such as w1.25d1.5"
        )
    width, depth = float(match[1]), float(match[2])
    if not (0.1 <= width <= 8 and 0.1 <= depth <= 8):
        raise RoadmapError(f"size {text!r}: multipliers must lie between 0.1 and 8")
    return Size(f"w{width:g}d{depth:g}", width_mult=width, depth_mult=depth)


def scale(spec: NetSpec, size: Size) -> NetSpec:
    """``spec`` at another size (see the module docstring)."""
    require_stages(spec, 4, f"size {size.label}", "widths and depths")
    widths = size.widths or tuple(make_divisible(w * size.width_mult, 8) for w in spec.widths)
    depths = size.depths or tuple(max(1, round(d * size.depth_mult)) for d in spec.depths)
    ratio = widths[0] / spec.widths[0]
    stem = tuple(replace(b, out_channels=max(1, round(b.out_channels * ratio))) for b in spec.stem)
    alternating = [_alternates(stage) for stage in spec.stages]
    scaled = set_depths(set_widths(replace(spec, stem=stem), widths), depths)
    return map_stages(scaled, lambda i, st: _realternate(st) if alternating[i] else st)


def _alternates(stage: StageSpec) -> bool:
    """Whether the stage's SE goes on its 1st, 3rd, 5th... block (and it has two or more)."""
    flags = [b.use_se for b in stage.blocks]
    return len(flags) > 1 and flags == [i % 2 == 0 for i in range(len(flags))]


def _realternate(stage: StageSpec) -> StageSpec:
    return replace(stage, blocks=alternate(stage.blocks, use_se=[True, False]))
