"""ResNeXt-ify: the 3x3 conv becomes depthwise.

**The change.** Each bottleneck's 3x3 conv gets one group per channel: a depthwise conv.

**Why.** ResNeXt's grouped convolution, taken to its limit. A depthwise conv mixes
information only in space, and the 1x1 convs only across channels: the same split as a
vision transformer's self-attention (a weighted sum per channel) and its MLP. It cuts the
compute, which the next step spends on width.

**What the paper measured.** 78.3% top-1 (from 79.5%), 2.4 GFLOPs (from 4.4). The paper
reports this row and the widening together as one ResNeXt step ending at 80.5%.

**Our choices where the paper is silent.** None: only the groups change.
"""

from roadmap.arch.edit import set_fields
from roadmap.arch.registry import register_step
from roadmap.arch.spec import NetSpec


@register_step(
    "depthwise_conv",
    title="Depthwise 3x3 conv in every bottleneck",
    section="§2.3",
    roadmap="convnext",
    paper_top1=78.28,
    paper_cost=2.35,
)
def depthwise_conv(spec: NetSpec) -> NetSpec:
    """Make every bottleneck's kxk conv depthwise."""
    return set_fields(spec, "bottleneck", depthwise=True)
