"""``repvit``: RepViT's block, a token mixer then a channel mixer (the paper's Figure 3b).

Token mixer: at stride 1 a RepVGG-style depthwise unit BN(DWkxk-BN(x) + DW1x1(x) + x), which
folds into one kxk depthwise conv for deployment; at stride 2 a plain DWkxk-BN (an identity
branch cannot cross a stride). Then [SE on the block's input width], then the channel mixer:
1x1 expand -> activation -> 1x1 project, with a residual when the width is unchanged. PyTorch's
default init, as timm's and the official RepViT leave it (the residual MLP's last BN at zero).
"""

from __future__ import annotations

import torch
from torch import nn

from roadmap.arch import anatomy
from roadmap.arch.anatomy import Box, Node, Par, Seq
from roadmap.arch.blocks import COMMON_FIELDS, BlockKind, mobile_block, register_block_kind
from roadmap.arch.layers import ConvNorm, RepDepthwise, channel_mixer, make_se
from roadmap.arch.spec import BlockSpec


class RepViTBlock(nn.Module):
    """Token mixer (spatial, per channel) -> [SE] -> channel mixer (1x1 MLP)."""

    def __init__(self, in_ch: int, spec: BlockSpec):
        super().__init__()
        k = spec.kernel_size
        if spec.stride == 1:
            self.token_mixer = RepDepthwise(in_ch, k)
        else:
            self.token_mixer = ConvNorm(in_ch, in_ch, k, spec.stride, groups=in_ch)
        self.se = make_se(in_ch, spec.se) if spec.use_se else nn.Identity()
        self.channel_mixer = channel_mixer(
            in_ch, spec.out_channels, spec.expand_ratio, spec.activation
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel_mixer(self.se(self.token_mixer(x)))


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
        build=RepViTBlock,
        draw=draw,
        title="RepViT's block: re-parameterizable DW token mixer -> [SE] -> 1x1 channel mixer",
        reads=COMMON_FIELDS,
        check=mobile_block,
        parts={"token_mixer": "token mixer", "se": "SE", "channel_mixer": "channel mixer"},
    )
)
