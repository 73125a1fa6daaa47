"""``inverted_residual``: MobileNetV3's block (the paper's Figure 3a).

1x1 expand (absent when ``expand_ratio`` is 1) -> kxk depthwise -> [SE on the expanded width]
-> 1x1 project; each conv has BN, the first two an activation; a residual when the stride is 1
and the width is unchanged. It starts as timm's ``mobilenetv3_large_100`` starts
(``_init_weight_goog``), so step 0 equals timm's network in distribution as well as in shape.
"""

from __future__ import annotations

from roadmap.arch import anatomy
from roadmap.arch.anatomy import Node, Seq
from roadmap.arch.blocks import (
    COMMON_FIELDS,
    BlockKind,
    changes_shape,
    lazy,
    mobile_block,
    register_block_kind,
)
from roadmap.arch.spec import BlockSpec


def expanded(in_ch: int, spec: BlockSpec) -> int:
    """The width the depthwise conv and SE work at."""
    return anatomy.hidden_width(in_ch, spec.expand_ratio) if spec.expand_ratio != 1 else in_ch


def has_skip(in_ch: int, spec: BlockSpec) -> bool:
    """A residual where the shape allows it (no stride, no new width)."""
    return not changes_shape(in_ch, spec)


def draw(b: BlockSpec, in_ch: int, fused: bool) -> Node:
    mid = expanded(in_ch, b)
    layers: tuple = ()
    if b.expand_ratio != 1:
        layers += anatomy.conv_norm(1, in_ch, mid, fused, act=b.activation)
    layers += anatomy.depthwise(b.kernel_size, mid, fused, stride=b.stride)
    layers += anatomy.activation(b.activation) + anatomy.se(mid, b.se, b.use_se)
    layers += anatomy.conv_norm(1, mid, b.out_channels, fused)
    return anatomy.maybe_res(Seq(layers), has_skip(in_ch, b))


register_block_kind(
    BlockKind(
        "inverted_residual",
        build=lazy("roadmap_steps.repvit.blocks.layers:InvertedResidual"),
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
        init=lazy("roadmap_steps.repvit.blocks.layers:init_inverted_residual"),
    )
)
