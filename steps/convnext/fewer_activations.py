"""Fewer activations: one GELU per block, between the two 1x1 convs.

**The change.** The activations after the depthwise conv and after the sum go; only the one
inside the MLP (1x1 -> GELU -> 1x1) stays.

**Why.** A transformer block has one activation, in its MLP. ResNet's habit of an
activation after every conv is not needed.

**What the paper measured.** 81.3% top-1 (from 80.6%), 4.2 GFLOPs: the largest single gain of
the micro design, matching Swin-T.

**Our choices where the paper is silent.** None.
"""

from roadmap.arch.edit import set_fields
from roadmap.arch.registry import register_step
from roadmap.arch.spec import NetSpec


@register_step(
    "fewer_activations",
    title="One activation per block",
    section="§2.6",
    roadmap="convnext",
    paper_top1=81.27,
    paper_cost=4.15,
)
def fewer_activations(spec: NetSpec) -> NetSpec:
    """Keep only the activation between the 1x1 convs of every ConvNeXt block."""
    return set_fields(spec, "convnext", acts="one")
