"""What a block is made of, as data: the layers in order, their widths, branches and skips.

A block kind (:mod:`roadmap.arch.blocks`) builds its ``nn.Module`` and draws its diagram from
the same spec, with the same rules, all here: :func:`hidden_width` (an expansion's width),
:func:`se_width` (SE's reduced width), and the drawing of each shared layer (:func:`conv_norm`,
:func:`depthwise`, :func:`se`, :func:`channel_mixer`). The diagram is a small tree:

- :class:`Box`: one layer; its ``channels`` are the widths its convolutions map between, in
  order (``(48, 96)`` for a 1x1 conv from 48 to 96; ``(48, 12, 48)`` for SE's two 1x1 convs),
  so a test can hold a drawing against the built module's convolutions;
- :class:`Seq` (in order), :class:`Par` (parallel branches, summed: RepVGG-style
  re-parameterization), :class:`Res` (``x + inner(x)``).

:mod:`roadmap.teach.diagram` lays the tree out as SVG.
"""

from __future__ import annotations

from dataclasses import dataclass

from roadmap.arch.spec import SESpec

ACTIVATION_NAMES = {"relu": "ReLU", "hard_swish": "Hardswish", "gelu": "GELU"}


def make_divisible(v: float, divisor: int = 8, round_limit: float = 0.9) -> int:
    """The MobileNets' channel rounding, timm's ``make_divisible`` rule: the nearest multiple
    of ``divisor`` (at least ``divisor``), one multiple up if that lost more than 10 %. Kept
    here rather than imported from timm so that a spec's widths are checked before torch loads
    (timm imports it); a test holds the two equal."""
    rounded = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < round_limit * v else rounded


def hidden_width(width: int, expand_ratio: float) -> int:
    """Hidden width of an expansion: the MobileNet rule, rounded to a multiple of 8."""
    return make_divisible(width * expand_ratio, 8)


def se_width(width: int, se: SESpec) -> int:
    """SE's reduced width on ``width`` channels (MobileNetV3 rounds up, RepViT to the nearest)."""
    return make_divisible(width * se.ratio, 8, round_limit=se.round_limit)


# --- the diagram's nodes ----------------------------------------------------------------------


@dataclass(frozen=True)
class Box:
    """One layer: a kind (its colour), a label, and the widths its convolutions map between."""

    kind: str
    label: str
    channels: tuple[int, ...] = ()


@dataclass(frozen=True)
class Seq:
    """Layers run in order."""

    items: tuple[Node, ...]


@dataclass(frozen=True)
class Par:
    """Parallel branches whose outputs are summed (a ``Box("identity", ...)`` is the skip)."""

    branches: tuple[Node, ...]


@dataclass(frozen=True)
class Res:
    """``x + inner(x)``: a residual connection around ``inner``."""

    inner: Node


Node = Box | Seq | Par | Res


def children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Seq):
        return node.items
    if isinstance(node, Par):
        return node.branches
    return (node.inner,) if isinstance(node, Res) else ()


def boxes(node: Node) -> list[Box]:
    """Every box, depth first in drawing order."""
    if isinstance(node, Box):
        return [node]
    return [b for child in children(node) for b in boxes(child)]


def find(node: Node, kind: type) -> list[Node]:
    """Every node of a kind (Par, Res, ...), depth first."""
    found = [node] if isinstance(node, kind) else []
    return found + [n for child in children(node) for n in find(child, kind)]


def maybe_res(body: Node, residual: bool) -> Node:
    return Res(body) if residual else body


# --- the shared layers, drawn ------------------------------------------------------------------


def activation(name: str) -> tuple[Box, ...]:
    """The activation's box, or none for ``"none"``."""
    label = ACTIVATION_NAMES.get(name)
    return (Box("act", label),) if label else ()


def conv_norm(
    kernel: int, in_ch: int, out_ch: int, fused: bool, *, stride: int = 1, act: str = "none"
) -> tuple[Box, ...]:
    """A dense Conv-BN[-activation] (:class:`roadmap.arch.layers.ConvNorm`); BN folds away."""
    name = "1x1 conv" if kernel == 1 else f"Conv {kernel}x{kernel}"
    where = f", stride {stride}" if stride != 1 else ""
    conv = Box("conv", f"{name} {in_ch}->{out_ch}{where}", (in_ch, out_ch))
    return (conv,) + (() if fused else (Box("bn", "BN"),)) + activation(act)


def depthwise(kernel: int, width: int, fused: bool, *, stride: int = 1) -> tuple[Box, ...]:
    """A depthwise Conv-BN (:class:`roadmap.arch.layers.ConvNorm` with ``groups=width``)."""
    label = f"DW {kernel}x{kernel}, {width}" + (f", stride {stride}" if stride != 1 else "")
    conv = Box("dw", label, (width, width))
    return (conv,) if fused else (conv, Box("bn", "BN"))


def se(width: int, spec: SESpec, use: bool = True) -> tuple[Box, ...]:
    """Squeeze-and-excitation on ``width`` channels (:func:`roadmap.arch.layers.make_se`)."""
    if not use:
        return ()
    reduced = se_width(width, spec)
    gate = "hard-sigmoid" if spec.gate == "hard_sigmoid" else "sigmoid"
    return (Box("se", f"SE {width}->{reduced}->{width}, {gate}", (width, reduced, width)),)


def channel_mixer(in_ch: int, out_ch: int, expand_ratio: float, act: str, fused: bool) -> Node:
    """1x1 expand -> activation -> 1x1 project, with a residual when the width is unchanged
    (:func:`roadmap.arch.layers.channel_mixer`)."""
    hidden = hidden_width(in_ch, expand_ratio)
    layers = conv_norm(1, in_ch, hidden, fused) + activation(act)
    layers += conv_norm(1, hidden, out_ch, fused)
    return maybe_res(Seq(layers), in_ch == out_ch)
