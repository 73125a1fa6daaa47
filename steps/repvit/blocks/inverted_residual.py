"""``inverted_residual``: MobileNetV3's block (the paper's Figure 3a).

1x1 expand (absent when ``expand_ratio`` is 1) -> kxk depthwise -> [SE on the expanded width]
-> 1x1 project; each conv has BN, the first two an activation; a residual when the stride is 1
and the width is unchanged. It starts as timm's ``mobilenetv3_large_100`` starts
(``_init_weight_goog``), so step 0 equals timm's network in distribution as well as in shape.
"""

from __future__ import annotations

import torch
from torch import nn

from roadmap.arch import anatomy
from roadmap.arch.anatomy import Node, Seq
from roadmap.arch.blocks import COMMON_FIELDS, BlockKind, mobile_block, register_block_kind
from roadmap.arch.layers import ConvNorm, init_goog, make_se
from roadmap.arch.spec import BlockSpec


def expanded(in_ch: int, spec: BlockSpec) -> int:
    """The width the depthwise conv and SE work at."""
    return anatomy.hidden_width(in_ch, spec.expand_ratio) if spec.expand_ratio != 1 else in_ch


def has_skip(in_ch: int, spec: BlockSpec) -> bool:
    return spec.stride == 1 and in_ch == spec.out_channels


class InvertedResidual(nn.Module):
    """1x1 expand -> kxk DW -> [SE] -> 1x1 project, residual when the shape allows."""

    def __init__(self, in_ch: int, spec: BlockSpec):
        super().__init__()
        mid, act = expanded(in_ch, spec), spec.activation
        self.conv_pw = ConvNorm(in_ch, mid, 1, act=act) if spec.expand_ratio != 1 else nn.Identity()
        self.conv_dw = ConvNorm(mid, mid, spec.kernel_size, spec.stride, groups=mid, act=act)
        self.se = make_se(mid, spec.se) if spec.use_se else nn.Identity()
        self.conv_pwl = ConvNorm(mid, spec.out_channels, 1)
        self.has_skip = has_skip(in_ch, spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_pwl(self.se(self.conv_dw(self.conv_pw(x))))
        return x + y if self.has_skip else y


def draw(b: BlockSpec, in_ch: int, fused: bool) -> Node:
    mid = expanded(in_ch, b)
    layers: tuple = ()
    if b.expand_ratio != 1:
        layers += anatomy.conv_norm(1, in_ch, mid, fused, act=b.activation)
    layers += anatomy.depthwise(b.kernel_size, mid, fused, stride=b.stride)
    layers += anatomy.activation(b.activation) + anatomy.se(mid, b.se, b.use_se)
    layers += anatomy.conv_norm(1, mid, b.out_channels, fused)
    return anatomy.maybe_res(Seq(layers), has_skip(in_ch, b))


def init(module: nn.Module) -> None:
    for m in module.modules():
        init_goog(m)


register_block_kind(
    BlockKind(
        "inverted_residual",
        build=InvertedResidual,
        draw=draw,
        title="MobileNetV3's block: 1x1 expand -> DW -> [SE] -> 1x1 project",
        reads=COMMON_FIELDS,
        check=mobile_block,
        parts={
            "conv_pw": "channel mixer",
            "conv_dw": "token mixer",
            "se": "SE",
            "conv_pwl": "channel mixer",
        },
        init=init,
    )
)
