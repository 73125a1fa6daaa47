"""BatchNorm becomes LayerNorm.

**The change.** Every BatchNorm (the blocks', the shortcuts', the stem's) becomes a LayerNorm
over the channels (eps 1e-6), computed for each position on its own.

**Why.** Transformers use LayerNorm. Replacing BN with LN in a ResNet costs accuracy; with
all the changes before, the paper found the opposite.

**What the paper measured.** 81.5% top-1 (from 81.4%), 4.5 GFLOPs (the paper counts the norm
layers' operations; our MACs count convolutions and linear layers only, so ours do not move).

**Our choices where the paper is silent.** The blocks now run their 1x1 convs as linear layers
on channels-last tensors, as the official code and timm do: the same function, and the form
ConvNeXt-T's weights load into. LayerNorm does not fold into a conv, so from here on the fused
network keeps its norms.
"""

from roadmap.arch.edit import map_blocks
from roadmap.arch.registry import register_step
from roadmap.arch.spec import BlockSpec, NetSpec, replace

NORM_KINDS = ("patchify", "patch_merging", "convnext")


@register_step(
    "layer_norm",
    title="BN -> LN",
    section="§2.6",
    roadmap="convnext",
    paper_top1=81.47,
    paper_cost=4.46,
)
def layer_norm(spec: NetSpec) -> NetSpec:
    """Switch every BatchNorm of the ConvNeXt-era layers to LayerNorm."""

    def edit(_path: str, b: BlockSpec) -> BlockSpec:
        return replace(b, extra={**b.extra, "norm": "layer"}) if b.kind in NORM_KINDS else b

    return map_blocks(spec, edit)
