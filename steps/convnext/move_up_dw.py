"""Move the depthwise conv up: it becomes the block's first layer.

**The change.** The block runs depthwise kxk -> 1x1 expand -> 1x1 project (the paper's
Figure 3c) instead of 1x1 -> depthwise -> 1x1. The block is now ConvNeXt's (``convnext``
kind), still with BatchNorm after every conv and ReLU after the depthwise conv, between the
1x1s and after the sum, as the bottleneck had them.

**Why.** A transformer block mixes tokens (self-attention) before its MLP; the large-kernel
depthwise conv is that token mixer. Moved up, it works on the narrow width, so a larger
kernel stays cheap (next step).

**What the paper measured.** 79.9% top-1 (from 80.6%), 4.1 GFLOPs (from 4.6): a step back
in accuracy that pays for the larger kernel.

**Our choices where the paper is silent.**

- *The stride.* A stage's first block downsamples in its depthwise conv (stride 2, on the
  narrow input width), and its shortcut keeps the 1x1 stride-2 projection with its norm,
  until ``separate_downsampling`` gives the downsampling layers of their own.
- *Layer scale* (a learned per-channel factor on the residual branch, starting at 1e-6)
  arrives with ConvNeXt's block. The paper's recipe uses layer scale for all of §2's networks
  but never says when it enters the architecture; here it replaces ResNet's own device for
  the same purpose, a last BatchNorm that starts at zero, so every block still starts as
  (almost) its shortcut.
- *Initialization* becomes ConvNeXt's (truncated normal, std 0.02) with the block.
"""

from roadmap.arch.edit import map_blocks
from roadmap.arch.registry import register_step
from roadmap.arch.spec import BlockSpec, NetSpec, replace

LAYER_SCALE = 1e-6


@register_step(
    "move_up_dw",
    title="Depthwise conv first: DW -> 1x1 -> 1x1 (ConvNeXt's block)",
    section="§2.5",
    roadmap="convnext",
    paper_top1=79.92,
    paper_cost=4.07,
)
def move_up_dw(spec: NetSpec) -> NetSpec:
    """Turn every bottleneck into a ConvNeXt block: depthwise first, BN and ReLU kept."""

    def edit(_path: str, b: BlockSpec) -> BlockSpec:
        if b.kind != "bottleneck":
            return b
        extra = {"norm": "batch", "norms": "all", "acts": "all", "layer_scale": LAYER_SCALE}
        return replace(b, kind="convnext", extra=extra)

    return map_blocks(spec, edit)
