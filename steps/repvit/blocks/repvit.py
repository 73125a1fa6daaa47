"""``repvit``: RepViT's block, a token mixer then a channel mixer (the paper's Figure 3b).

Token mixer: at stride 1 a RepVGG-style depthwise unit BN(DWkxk-BN(x) + DW1x1(x) + x), which
folds into one kxk depthwise conv for deployment; at stride 2 a plain DWkxk-BN (an identity
branch cannot cross a stride). Then [SE on the block's input width], then the channel mixer:
1x1 expand -> activation -> 1x1 project, with a residual when the width is unchanged. PyTorch's
default init, as timm's and the official RepViT leave it (the residual MLP's last BN at zero).
"""

from __future__ import annotations

from roadmap.arch import anatomy
from roadmap.arch.anatomy import Box, Node, Par, Seq
from roadmap.arch.blocks import COMMON_FIELDS, BlockKind, lazy, mobile_block, register_block_kind
from roadmap.arch.spec import BlockSpec


def token_mixer(b: BlockSpec, width: int, fused: bool) -> Node:
    """At stride 1 three branches summed (DW kxk + BN, DW 1x1, the identity) then BN, folded
    into one DW kxk when fused; at stride 2 a plain DW."""
    k = b.kernel_size
    if b.stride != 1:
        return Seq(anatomy.depthwise(k, width, fused, stride=b.stride))
    if fused:
        return Seq((Box("dw", f"DW {k}x{k}, {width} (3 branches folded)", (width, width)),))
    branches = Par(
        (
            Seq(anatomy.depthwise(k, width, fused)),
            Box("dw", f"DW 1x1, {width}", (width, width)),
            Box("identity", "identity"),
        )
    )
    return Seq((branches, Box("bn", "BN")))


def draw(b: BlockSpec, in_ch: int, fused: bool) -> Node:
    mixer = anatomy.channel_mixer(in_ch, b.out_channels, b.expand_ratio, b.activation, fused)
    return Seq((token_mixer(b, in_ch, fused), *anatomy.se(in_ch, b.se, b.use_se), mixer))


register_block_kind(
    BlockKind(
        "repvit",
        build=lazy("roadmap_steps.repvit.blocks.layers:RepViTBlock"),
        draw=draw,
        title="RepViT's block: re-parameterizable DW token mixer -> [SE] -> 1x1 channel mixer",
        reads=COMMON_FIELDS,
        check=mobile_block,
        parts={"token_mixer": "token mixer", "se": "SE", "channel_mixer": "channel mixer"},
    )
)
