"""The inverted bottleneck: the block is narrow outside and four times wider inside.

**The change.** Each block's outer width drops to the stage's width (96 / 192 / 384 / 768)
and its inner width becomes four times that: 1x1 96 -> 384, depthwise 3x3 on 384, 1x1 384 ->
96 (the paper's Figure 3b).

**Why.** A transformer's MLP block is four times wider inside than outside; MobileNetV2 made
the same choice. With a depthwise middle layer the wide part is cheap, and the shortcuts'
projections, now narrow, cost far less.

**What the paper measured.** 80.6% top-1 (from 80.5%), 4.6 GFLOPs (from 5.3).

**Our choices where the paper is silent.** None beyond the widths the figure shows.
"""

from roadmap.arch.edit import map_blocks
from roadmap.arch.registry import register_step
from roadmap.arch.spec import BlockSpec, NetSpec, replace

EXPANSION = 4.0


@register_step(
    "inverted_bottleneck",
    title="Inverted bottleneck: 1x1 to 4x wider, DW, 1x1 back",
    section="§2.4",
    roadmap="convnext",
    paper_top1=80.64,
    paper_cost=4.64,
)
def inverted_bottleneck(spec: NetSpec) -> NetSpec:
    """Narrow every bottleneck's outside to its inner width and make the inside 4x wider."""

    def edit(_path: str, b: BlockSpec) -> BlockSpec:
        if b.kind != "bottleneck":
            return b
        inner = round(b.out_channels * b.expand_ratio)
        return replace(b, out_channels=inner, expand_ratio=EXPANSION)

    return map_blocks(spec, edit)
