"""``conv``: a plain kxk Conv-BN-activation layer (the stems of both endpoints are made of them).

A plain layer: it is no feature level of its own (timm's ``conv_stem`` is not one either), and
it starts as the stem around it starts (MobileNetV3's init in MobileNetV3's stem, PyTorch's
defaults in RepViT's early-conv stem), so a step that swaps the stem swaps its init with it.
"""

from __future__ import annotations

from roadmap.arch import anatomy
from roadmap.arch.anatomy import Node, Seq
from roadmap.arch.blocks import (
    BlockKind,
    lazy,
    no_se,
    odd_kernel,
    register_block_kind,
    stride_1_or_2,
)
from roadmap.arch.spec import BlockSpec

BUILD = lazy("roadmap.arch.layers:ConvLayer")  # ResNet's stem builds the same layer


def draw(b: BlockSpec, in_ch: int, fused: bool) -> Node:
    layers = anatomy.conv_norm(
        b.kernel_size, in_ch, b.out_channels, fused, stride=b.stride, act=b.activation
    )
    return Seq(layers)


register_block_kind(
    BlockKind(
        "conv",
        build=BUILD,
        draw=draw,
        title="kxk Conv-BN-activation",
        reads=("out_channels", "kernel_size", "stride", "activation"),
        check=lambda b: odd_kernel(b) + stride_1_or_2(b) + no_se(b),
        plain=True,
    )
)
