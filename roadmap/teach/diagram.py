"""Block diagrams drawn from the spec, in the paper's visual language (its Figures 3 and 4).

A diagram is drawn from the same :class:`~roadmap.arch.spec.NetSpec` that builds the network,
by the same block kinds (:mod:`roadmap.arch.blocks`) with the same width rules
(:mod:`roadmap.arch.anatomy`), so it cannot drift from it (the tests hold every block's drawn
widths against the built module's convolutions): :func:`part` turns one part of a spec (a
block, a stage's downsampling layer, the stem, the head) into a small tree of boxes (layers),
sequences, parallel branches (summed: RepVGG-style re-parameterization) and residual
connections, in its training form or fused for deployment. :func:`svg` draws the tree.

The renderer is SVG written directly, on purpose: a diagram is boxes, arrows and text, which
SVG states exactly; the file is small, crisp at any zoom on a projector, embeds inline in an
HTML page and shows as an image on code hosts, and it needs no package (matplotlib would
rasterize or approximate text placement; graphviz needs a system binary; Mermaid needs a
JavaScript renderer). Colours by layer kind: depthwise convs blue, 1x1 convs green, SE orange,
BatchNorm grey, activations purple, pooling yellow, linear layers teal.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from roadmap.arch import anatomy
from roadmap.arch.anatomy import Box, Node, Par, Res, Seq, boxes, find
from roadmap.arch.blocks import get_block_kind
from roadmap.arch.spec import BlockSpec, HeadSpec, NetSpec, StageSpec
from roadmap.errors import RoadmapError

__all__ = [
    "Box",
    "Diagram",
    "Par",
    "Res",
    "Seq",
    "block",
    "block_at",
    "boxes",
    "find",
    "part",
    "svg",
]

COLOURS = {
    "dw": "#cfe2f3",
    "conv": "#d9ead3",
    "se": "#fce5cd",
    "bn": "#eeeeee",
    "act": "#e6d9f2",
    "pool": "#fff2cc",
    "linear": "#d0ece7",
    "identity": "#ffffff",
    "attention": "#f4cccc",
    "token": "#fff2cc",
}


@dataclass(frozen=True)
class Diagram:
    """A titled diagram of one part of a network."""

    title: str
    root: Node
    notes: tuple[str, ...] = field(default=())


# --- from the spec ----------------------------------------------------------------------------


def part(spec: NetSpec, path: str, fused: bool = False) -> Diagram:
    """The diagram of ``path`` (``stem``, ``head``, ``stages.2.downsample`` or
    ``stages.2.blocks.3``) in the training form, or ``fused`` for deployment."""
    inputs = block_inputs(spec)
    form = "deploy form (fused)" if fused else "training form"
    if path == "head":
        width = spec.widths[-1]
        return Diagram(f"head, {form}", head(spec.head, width, spec.num_classes, fused))
    if path == "stem":
        items = [block(b, inputs[f"stem.{i}"], fused) for i, b in enumerate(spec.stem)]
        return Diagram(f"stem, {form}", Seq(tuple(items)))
    parts = path.split(".")
    if len(parts) == 3 and parts[0] == "stages" and parts[2] == "downsample":
        stage = _stage(spec, parts[1], path)
        items = [block(b, inputs[f"{path}.{i}"], fused) for i, b in enumerate(stage.downsample)]
        if not items:
            raise RoadmapError(f"{path}: this stage has no downsampling layer")
        return Diagram(f"{path}, {form}", Seq(tuple(items)))
    if len(parts) == 4 and parts[0] == "stages" and parts[2] == "blocks":
        stage = _stage(spec, parts[1], path)
        if not parts[3].isdigit() or int(parts[3]) >= len(stage.blocks):
            raise RoadmapError(f"{path}: stages.{parts[1]} has {len(stage.blocks)} blocks")
        b = stage.blocks[int(parts[3])]
        return Diagram(f"{path} ({b.kind}), {form}", block(b, inputs[path], fused))
    raise RoadmapError(
        f"{path!r} is not a part to draw: use stem, head, stages.N.downsample or stages.N.blocks.M"
    )


def _stage(spec: NetSpec, index: str, path: str) -> StageSpec:
    if not index.isdigit() or int(index) >= len(spec.stages):
        raise RoadmapError(f"{path}: the network has {len(spec.stages)} stages")
    return spec.stages[int(index)]


def block_inputs(spec: NetSpec) -> dict[str, int]:
    """Each block's input width, by spec path (the builder threads widths the same way)."""
    width, out = spec.in_channels, {}
    for path, b in spec.iter_blocks():
        out[path] = width
        width = b.out_channels
    return out


def block_at(spec: NetSpec, path: str, fused: bool = False) -> Node:
    """The block at a spec path (``stem.0``, ``stages.1.downsample.0``, ``stages.2.blocks.3``)."""
    blocks = dict(spec.iter_blocks())
    if path not in blocks:
        raise RoadmapError(f"{path!r} is not a block of this network")
    return block(blocks[path], block_inputs(spec)[path], fused)


def block(b: BlockSpec, in_ch: int, fused: bool = False) -> Node:
    """One block as a diagram: its kind's drawing (the layers its kind builds, in order)."""
    return get_block_kind(b.kind).draw(b, in_ch, fused)


def head(h: HeadSpec, width: int, num_classes: int, fused: bool = False) -> Node:
    """[1x1 conv] -> pooling -> [1x1 conv + act] -> [BN] -> linear (Figure 4, classifier)."""
    layers: tuple = ()
    if h.pre_pool_channels:
        layers += anatomy.conv_norm(1, width, h.pre_pool_channels, fused, act=h.activation)
        width = h.pre_pool_channels
    folded = fused and h.pre_pool_norm == "batch" and h.pool == "avg" and num_classes
    if h.pre_pool_norm and not folded:
        layers += (Box("bn", {"layer": "LN", "batch": "BN"}[h.pre_pool_norm]),)
    pooling = "class token" if h.pool == "token" else f"global {h.pool or 'no'} pooling"
    layers += (Box("pool", pooling),)
    if h.hidden_channels:
        hidden = (width, h.hidden_channels)
        layers += (Box("conv", f"1x1 conv {width}->{h.hidden_channels}", hidden),)
        layers += anatomy.activation(h.activation)
        width = h.hidden_channels
    if h.norm and not fused:
        layers += (Box("bn", "BN"),)
    if num_classes:
        layers += (Box("linear", f"Linear {width}->{num_classes}", (width, num_classes)),)
    return Seq(layers)


# --- SVG ---------------------------------------------------------------------------------------

BOX_H, GAP, PAD, FONT = 26, 14, 18, 12
CHAR_W, MIN_BOX_W = 7.0, 70  # a 12 px sans-serif character is about 7 px wide


def _box_width(box: Box) -> float:
    return max(MIN_BOX_W, CHAR_W * len(box.label) + 20)


@dataclass
class _Layout:
    width: float
    height: float
    draw: object  # (x, y) -> list[str], x the left edge, y the top


def svg(diagram: Diagram) -> str:
    """The diagram as a standalone SVG document (text is escaped)."""
    layout = _layout(diagram.root)
    width = max(layout.width, CHAR_W * 1.1 * len(diagram.title)) + 2 * PAD
    height = layout.height + 2 * PAD + 24
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="Helvetica, Arial, sans-serif" '
        f'font-size="{FONT}" role="img">',
        f"<title>{html.escape(diagram.title)}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#555"/></marker></defs>',
        f'<text x="{PAD}" y="{PAD + 4}" font-weight="bold">{html.escape(diagram.title)}</text>',
        *layout.draw(PAD, PAD + 24),
        "</svg>",
    ]
    return "\n".join(parts)


def _layout(node: Node) -> _Layout:
    if isinstance(node, Box):
        return _Layout(_box_width(node), BOX_H, lambda x, y, n=node: _box(n, x, y))
    if isinstance(node, Seq):
        return _seq([_layout(item) for item in node.items])
    if isinstance(node, Par):
        return _par([_layout(b) for b in node.branches])
    return _res(_layout(node.inner))


def _box(box: Box, x: float, y: float) -> list[str]:
    dash = ' stroke-dasharray="4 3"' if box.kind == "identity" else ""
    width = _box_width(box)
    return [
        f'<g class="box {box.kind}"><rect x="{x:.0f}" y="{y:.0f}" width="{width:.0f}" '
        f'height="{BOX_H}" rx="5" fill="{COLOURS.get(box.kind, "#fff")}" stroke="#555"{dash}/>'
        f'<text x="{x + width / 2:.0f}" y="{y + BOX_H / 2 + 4:.0f}" text-anchor="middle">'
        f"{html.escape(box.label)}</text></g>"
    ]


def _arrow(x1: float, y1: float, x2: float, y2: float) -> str:
    return (
        f'<line class="edge" x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" '
        'stroke="#555" marker-end="url(#arrow)"/>'
    )


def _seq(items: list[_Layout]) -> _Layout:
    width = max((i.width for i in items), default=MIN_BOX_W)
    height = sum(i.height for i in items) + GAP * max(len(items) - 1, 0)

    def draw(x: float, y: float) -> list[str]:
        out, top = [], y
        for k, item in enumerate(items):
            left = x + (width - item.width) / 2
            out += item.draw(left, top)
            if k + 1 < len(items):
                out.append(
                    _arrow(x + width / 2, top + item.height, x + width / 2, top + item.height + GAP)
                )
            top += item.height + GAP
        return out

    return _Layout(width, height, draw)


def _sum_node(cx: float, cy: float) -> list[str]:
    return [
        f'<g class="add"><circle cx="{cx:.0f}" cy="{cy:.0f}" r="9" fill="#fff" stroke="#555"/>'
        f'<text x="{cx:.0f}" y="{cy + 4:.0f}" text-anchor="middle">+</text></g>'
    ]


def _par(branches: list[_Layout]) -> _Layout:
    width = sum(b.width for b in branches) + GAP * (len(branches) - 1)
    inner = max(b.height for b in branches)
    height = inner + 2 * GAP + 2 * 9 + GAP

    def draw(x: float, y: float) -> list[str]:
        cx, out, left = x + width / 2, [], x
        split, join = y, y + GAP + inner + GAP + 9
        for b in branches:
            bx = left + b.width / 2
            out.append(_arrow(cx, split, bx, y + GAP))
            out += b.draw(left, y + GAP)  # branches start together, like the paper's figure
            out.append(_arrow(bx, y + GAP + b.height, cx, join - 9))
            left += b.width + GAP
        return out + _sum_node(cx, join)

    return _Layout(width, height, draw)


def _res(inner: _Layout) -> _Layout:
    width, height = inner.width + 60, inner.height + GAP + 2 * 9 + 4

    def draw(x: float, y: float) -> list[str]:
        cx = x + inner.width / 2
        out = inner.draw(x, y)
        join = y + inner.height + GAP + 9
        out.append(_arrow(cx, y + inner.height, cx, join - 9))
        skip_x = x + inner.width + 30
        out.append(
            f'<path class="skip" d="M{cx:.0f},{y - 4:.0f} H{skip_x:.0f} V{join:.0f} H{cx + 9:.0f}" '
            'fill="none" stroke="#555" marker-end="url(#arrow)"/>'
        )
        return out + _sum_node(cx, join)

    return _Layout(width, height, draw)
