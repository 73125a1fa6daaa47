"""ResNet's kinds (the ConvNeXt roadmap's start): ``resnet_stem``, ``max_pool``, ``bottleneck``.

- ``resnet_stem``: the kxk Conv-BN-activation that opens ResNet (7x7, stride 2, 64 channels).
  Unlike a plain ``conv`` it is a feature level of its own, as timm's ``act1`` is.
- ``max_pool``: kxk max pooling ("same" padding); a plain layer with no weights.
- ``bottleneck``: 1x1 reduce -> kxk (the stride here, "ResNet v1.5" as timm and torchvision
  have it; depthwise when ``depthwise`` is set) -> 1x1 expand, each with BN, the first two with
  the activation; a 1x1-conv-BN projection on the shortcut when the shape changes; the
  activation after the sum. The middle width is ``out_channels * expand_ratio`` (0.25 in
  ResNet: 64 inside a 256-wide block; 4 once the bottleneck is inverted).

They start as timm's ``resnet50`` starts: convolutions Kaiming-normal (fan out, ReLU gain),
BatchNorm ones and zeros, and each block's last BN at zero, so a block starts as its shortcut.
"""

from __future__ import annotations

from roadmap.arch import anatomy
from roadmap.arch.anatomy import Box, Node, Par, Seq
from roadmap.arch.blocks import (
    BlockKind,
    changes_shape,
    lazy,
    no_se,
    odd_kernel,
    register_block_kind,
    stride_1_or_2,
)
from roadmap.arch.blocks.conv import BUILD as build_conv
from roadmap.arch.blocks.conv import draw as draw_conv
from roadmap.arch.spec import BlockSpec


def middle(spec: BlockSpec) -> int:
    """The width between a bottleneck's 1x1 convs."""
    return anatomy.hidden_width(spec.out_channels, spec.expand_ratio)


def draw_bottleneck(b: BlockSpec, in_ch: int, fused: bool) -> Node:
    mid, out = middle(b), b.out_channels
    layers = anatomy.conv_norm(1, in_ch, mid, fused, act=b.activation)
    if BOTTLENECK.value(b, "depthwise"):
        layers += anatomy.depthwise(b.kernel_size, mid, fused, stride=b.stride)
        layers += anatomy.activation(b.activation)
    else:
        layers += anatomy.conv_norm(
            b.kernel_size, mid, mid, fused, stride=b.stride, act=b.activation
        )
    body = Seq(layers + anatomy.conv_norm(1, mid, out, fused))
    if changes_shape(in_ch, b):
        shortcut = Seq(anatomy.conv_norm(1, in_ch, out, fused, stride=b.stride))
        summed: Node = Par((body, shortcut))
    else:
        summed = anatomy.Res(body)
    return Seq((summed, *anatomy.activation(b.activation)))


def draw_pool(b: BlockSpec, in_ch: int, fused: bool) -> Node:
    return Seq((Box("pool", f"MaxPool {b.kernel_size}x{b.kernel_size}, stride {b.stride}"),))


register_block_kind(
    BlockKind(
        "resnet_stem",
        build=build_conv,
        draw=draw_conv,
        title="ResNet's stem conv: kxk Conv-BN-activation, a feature level",
        reads=("out_channels", "kernel_size", "stride", "activation"),
        check=lambda b: odd_kernel(b) + stride_1_or_2(b) + no_se(b),
        init=lazy("roadmap_steps.convnext.blocks.layers:init_resnet"),
    )
)
register_block_kind(
    BlockKind(
        "max_pool",
        build=lazy("roadmap_steps.convnext.blocks.layers:MaxPool"),
        draw=draw_pool,
        title="kxk max pooling (ResNet's stem)",
        reads=("out_channels", "kernel_size", "stride"),
        check=lambda b: odd_kernel(b) + stride_1_or_2(b) + no_se(b),
        plain=True,
    )
)
BOTTLENECK = register_block_kind(
    BlockKind(
        "bottleneck",
        build=lazy("roadmap_steps.convnext.blocks.layers:Bottleneck"),
        draw=draw_bottleneck,
        title="ResNet's bottleneck: 1x1 -> kxk (or DW) -> 1x1, activation after the sum",
        reads=("out_channels", "kernel_size", "stride", "expand_ratio", "activation"),
        extra={"depthwise": ("bool", False)},
        check=lambda b: odd_kernel(b) + stride_1_or_2(b) + no_se(b),
        parts={
            "conv1": "channel mixer",
            "conv2": "token mixer",
            "conv3": "channel mixer",
            "shortcut": "downsampling",
        },
        init=lazy("roadmap_steps.convnext.blocks.layers:init_resnet"),
    )
)
