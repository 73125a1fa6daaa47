"""Separate downsampling layers: ConvNeXt-T.

**The change.** The stride leaves the blocks: each of stages 2-4 opens with its own
downsampling layer, a LayerNorm and a 2x2 stride-2 conv to the new width (Swin's patch
merging), so every block keeps its width and resolution and its shortcut is the identity. A
LayerNorm also follows the global pooling. The network is now ConvNeXt-T, equal to timm's
``convnext_tiny`` layer for layer and output for output (28,589,128 parameters).

**Why.** Swin downsamples between stages, not inside blocks. The paper found training
diverged until norms were added wherever the resolution changes: before each downsampling
layer, after the stem (there since ``layer_norm``), and after the final pooling.

**What the paper measured.** 82.0% top-1 (from 81.5%), 4.5 GFLOPs: above Swin-T's 81.3% at
the same cost.

**Our choices where the paper is silent.** None: the rest is ConvNeXt-T's published code
(the classifier starts truncated normal, std 0.02, as its layers do).
"""

from roadmap.arch.edit import map_stages
from roadmap.arch.registry import register_step
from roadmap.arch.spec import BlockSpec, HeadSpec, NetSpec, StageSpec, replace


def _merging(width: int) -> BlockSpec:
    return BlockSpec(
        kind="patch_merging",
        out_channels=width,
        kernel_size=2,
        stride=2,
        activation="none",
        extra={"norm": "layer"},
    )


@register_step(
    "separate_downsampling",
    title="Separate downsampling layers (ConvNeXt-T)",
    section="§2.6",
    roadmap="convnext",
    paper_top1=81.97,
    paper_cost=4.49,
)
def separate_downsampling(spec: NetSpec) -> NetSpec:
    """Move each stage's stride into a LayerNorm + 2x2 stride-2 conv before its blocks."""

    def edit(i: int, stage: StageSpec) -> StageSpec:
        blocks = tuple(replace(b, stride=1) for b in stage.blocks)
        strided = any(b.stride == 2 for b in stage.blocks)
        downsample = (_merging(blocks[0].out_channels),) if strided else ()
        return replace(stage, downsample=stage.downsample + downsample, blocks=blocks)

    head: HeadSpec = replace(spec.head, pool_norm="layer", init="trunc_normal")
    return replace(map_stages(spec, edit), head=head)
