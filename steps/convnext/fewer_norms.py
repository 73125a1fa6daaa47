"""Fewer normalization layers: one per block, after the depthwise conv.

**The change.** The BatchNorms after the two 1x1 convs go; the one after the depthwise conv
(before the 1x1s) stays.

**Why.** A transformer block normalizes once, before its MLP (and once before attention).

**What the paper measured.** 81.4% top-1 (from 81.3%), 4.2 GFLOPs. (Adding a BN at the
block's start as well did not help, the paper notes.)

**Our choices where the paper is silent.** The 1x1 convs get biases, as convs without a norm
after them do; the shortcut's projection keeps its norm.
"""

from roadmap.arch.edit import set_fields
from roadmap.arch.registry import register_step
from roadmap.arch.spec import NetSpec


@register_step(
    "fewer_norms",
    title="One norm per block",
    section="§2.6",
    roadmap="convnext",
    paper_top1=81.41,
    paper_cost=4.15,
)
def fewer_norms(spec: NetSpec) -> NetSpec:
    """Keep only the norm after the depthwise conv of every ConvNeXt block."""
    return set_fields(spec, "convnext", norms="one")
