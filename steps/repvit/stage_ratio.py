"""Stage ratio 1:1:7:1, depths 2:2:14:2.

**The change.** The four stages get 2, 2, 14 and 2 blocks (MobileNetV3-L has 1, 2, 5 and 2).
The blocks inside the downsampling layers are not counted, as in timm's RepViT definition.

**Why.** Hierarchical ViTs put most of their depth in the third stage (EfficientFormer-L2
uses 1:1:3:1.5, Conv2Former 1:1:4:1 and 1:1:8:1). The third stage works at 14x14, where
computation is cheap per block, so depth there buys accuracy at little latency.

**What the paper measured.** 76.9% top-1 (+2.1 over the previous step), 0.91 ms.

**Our choice where the paper is silent.** A stage grows by repeating its last block, kernel
size and SE included, and shrinks by dropping blocks from its end. So until
``alternating_se`` the new blocks of stage 3 carry SE (its last MobileNetV3 blocks had SE),
and those of stage 1 do not; the paper does not say how the intermediate network placed SE.
"""

from roadmap.arch.edit import require_stages, set_depths
from roadmap.arch.registry import register_step
from roadmap.arch.spec import NetSpec

DEPTHS = (2, 2, 14, 2)


@register_step(
    "stage_ratio",
    title="Stage ratio 1:1:7:1 (depths 2/2/14/2)",
    section="§3.3",
    roadmap="repvit",
    paper_top1=76.9,
    paper_speed=0.91,
)
def stage_ratio(spec: NetSpec) -> NetSpec:
    """Give the four stages 2, 2, 14 and 2 blocks."""
    require_stages(spec, len(DEPTHS), "stage_ratio", "depths")
    return set_depths(spec, DEPTHS)
