"""Wider network: 96 channels where ResNet-50 had 64.

**The change.** Every width grows by half: the stem and the bottlenecks' inner widths go from
64 / 128 / 256 / 512 to 96 / 192 / 384 / 768 (Swin-T's), the blocks' outer widths from 256 ...
2048 to 384 ... 3072.

**Why.** The depthwise conv freed compute; ResNeXt's rule is to spend it on width.

**What the paper measured.** 80.5% top-1 (from 78.3%), 5.3 GFLOPs (from 2.4).

**Our choices where the paper is silent.** The paper names the first stage's width only
("from 64 to 96"); every width scales with it, the stem included.
"""

from roadmap.arch.edit import map_blocks
from roadmap.arch.registry import register_step
from roadmap.arch.spec import BlockSpec, NetSpec, replace

SCALE = 1.5


@register_step(
    "increase_width",
    title="Widths x1.5: 96 channels where there were 64",
    section="§2.3",
    roadmap="convnext",
    paper_top1=80.50,
    paper_cost=5.27,
)
def increase_width(spec: NetSpec) -> NetSpec:
    """Scale every block's width by 1.5."""

    def edit(_path: str, b: BlockSpec) -> BlockSpec:
        return replace(b, out_channels=round(b.out_channels * SCALE))

    return map_blocks(spec, edit)
