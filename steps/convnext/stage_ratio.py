"""Stage compute ratio 3:3:9:3.

**The change.** The four stages hold 3, 3, 9 and 3 blocks (ResNet-50: 3, 4, 6, 3).

**Why.** Swin-T spends its compute in the ratio 1:1:3:1 (2, 2, 6, 2 blocks); ResNet's
heavy third stage was a choice made for detection. The paper adopts Swin's ratio at
ResNet-50's size.

**What the paper measured.** 79.4% top-1 (from 78.8%), 4.5 GFLOPs (from 4.1).

**Our choices where the paper is silent.** Blocks are repeated or dropped at the end of each
stage, so every stage still opens with its downsampling block.
"""

from roadmap.arch.edit import set_depths
from roadmap.arch.registry import register_step
from roadmap.arch.spec import NetSpec

DEPTHS = (3, 3, 9, 3)


@register_step(
    "stage_ratio",
    title="Stage ratio 3:3:9:3",
    section="§2.2",
    roadmap="convnext",
    paper_top1=79.36,
    paper_cost=4.53,
)
def stage_ratio(spec: NetSpec) -> NetSpec:
    """Give the four stages 3, 3, 9 and 3 blocks."""
    return set_depths(spec, DEPTHS)
