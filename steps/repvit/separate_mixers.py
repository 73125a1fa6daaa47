"""Separate the token mixer from the channel mixer (the RepViT block).

**The change.** In a MobileNetV3 block the depthwise conv (the part that mixes information
across space, a *token mixer* in ViT terms) sits between the two 1x1 convs (which mix across
channels, the *channel mixer*). This step moves the depthwise conv, and the SE layer with it,
to the front: depthwise kxk -> [SE] -> 1x1 expand -> activation -> 1x1 project. Where the
stride is 1 the depthwise conv becomes RepVGG-style re-parameterizable: during training
BN(DWkxk-BN(x) + DW1x1(x) + x); for inference the three branches and the BN fold into one
kxk depthwise conv (``roadmap.fuse``), so the extra branches cost nothing at deploy time.

**Why.** This is the MetaFormer view of ViTs: a block = token mixer + channel mixer. Separating
them lets each be designed on its own, and the re-parameterized identity branch gives the
token mixer the residual path the fused model does not pay for. The SE layer moves up with
the depthwise conv because, in the paper's words, it depends on spatial information
interaction: it belongs with the token mixer, not among the channel mixer's 1x1 convs.

**What the paper measured.** 68.3% top-1 (a "temporary performance degradation" from 71.5%)
and 0.81 ms, down from 1.01 ms: the SE and depthwise conv now act on the narrow width instead
of the expanded one.

**Our choices where the paper is silent.**

- *Stride-2 blocks.* Moved up the same way, their depthwise conv is plain (kxk stride-2 DW-BN):
  an identity branch cannot exist across a stride. They keep no residual, as before. Another
  reading is possible: the paper's Figure 4(c) draws MobileNetV3's downsampling as an inverted
  bottleneck with a stride-2 depthwise conv, so the stride-2 blocks could stay MobileNetV3
  blocks until ``deeper_downsampling`` replaces them. We move them too, because the §3.2 text
  moves the depthwise conv up in the blocks without exempting any, and the official RepViT
  code has exactly this stride-2 form of its block (DW stride 2 -> [SE] -> 1x1).
- *Blocks that change width at stride 1* (80 -> 112 in stage 3): the token mixer works at the
  input width and the channel mixer maps it to the output width, without a residual.
- *The SE form (our addition, not the paper's).* SE now acts on the block width, so it takes
  RepViT's form: a sigmoid gate instead of MobileNetV3's hard-sigmoid, and the reduced width
  rounded to the nearest multiple of 8 instead of MobileNetV3's round-up rule, as in the
  official RepViT block. The paper does not mention the switch; it is where the final network
  ends up, and making it here keeps the later steps from changing the SE form again.
- *The depthwise-separable block in the stem* already has its depthwise conv first and no
  expansion, so it stays as it is (``early_conv_stem`` replaces it later).
- *No activation after the token mixer*, as in the official RepViT block.
"""

from roadmap.arch.edit import has_kind, map_blocks
from roadmap.arch.registry import register_step
from roadmap.arch.spec import REPVIT_SE, BlockSpec, NetSpec, replace
from roadmap.errors import PreconditionError


@register_step(
    "separate_mixers",
    title="Separate token and channel mixers (RepViT block)",
    section="§3.2",
    roadmap="repvit",
    paper_top1=68.3,
    paper_speed=0.81,
)
def separate_mixers(spec: NetSpec) -> NetSpec:
    """Turn every MobileNetV3 block that has an expansion into a RepViT block."""
    if not has_kind(spec, "inverted_residual"):
        raise PreconditionError(
            "separate_mixers changes MobileNetV3 blocks, and this network has none "
            "(it needs mobilenetv3_large as its base)"
        )

    def move_up(_path: str, block: BlockSpec) -> BlockSpec:
        if block.kind != "inverted_residual" or block.expand_ratio == 1:
            return block
        return replace(block, kind="repvit", se=REPVIT_SE)

    return map_blocks(spec, move_up)
