"""3x3 kernels everywhere.

**The change.** Every depthwise kernel becomes 3x3 (MobileNetV3-L has 5x5 in two of its
stages; after ``deeper_downsampling`` the downsampling layers inherit them).

**Why.** The paper grants that large kernels can raise accuracy (ConvNeXt, RepLKNet), but
calls them unfriendly to mobile devices: mobile compilers and hardware optimize 3x3 depthwise
convs well and larger ones poorly. MobileNetV3-L's few 5x5 convs therefore go, with accuracy
kept and latency saved.

**What the paper measured.** Top-1 unchanged at 76.9%, latency 0.89 ms (from 0.91 ms).

**Note for the deploy form.** Before this step the RepVGG-style token mixers include 5x5 ones;
``roadmap.fuse`` pads the 1x1 branch and the identity to the kernel's size (the official and
timm fuse code hard-code 3x3 padding and would fail here).
"""

from roadmap.arch.edit import map_blocks
from roadmap.arch.registry import register_step
from roadmap.arch.spec import NetSpec, replace


@register_step(
    "kernel_3x3",
    title="3x3 kernels everywhere",
    section="§3.4",
    roadmap="repvit",
    paper_top1=76.9,
    paper_speed=0.89,
)
def kernel_3x3(spec: NetSpec) -> NetSpec:
    """Set every kernel size to 3."""
    return map_blocks(spec, lambda _path, block: replace(block, kernel_size=3))
