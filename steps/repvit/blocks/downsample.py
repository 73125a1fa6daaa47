"""``downsample``: RepViT's downsampling unit between stages (``deeper_downsampling``).

DW kxk stride 2 Conv-BN -> 1x1 Conv-BN to the new width -> a residual FFN (1x1 expand ->
activation -> 1x1 project). All of it counts as downsampling in a profile. PyTorch's default
init, as the official code leaves it.
"""

from __future__ import annotations

from roadmap.arch import anatomy
from roadmap.arch.anatomy import Node, Seq
from roadmap.arch.blocks import (
    BlockKind,
    expands,
    lazy,
    no_se,
    odd_kernel,
    register_block_kind,
)
from roadmap.arch.spec import BlockSpec


def draw(b: BlockSpec, in_ch: int, fused: bool) -> Node:
    out = b.out_channels
    layers = anatomy.depthwise(b.kernel_size, in_ch, fused, stride=2)
    layers += anatomy.conv_norm(1, in_ch, out, fused)
    return Seq((*layers, anatomy.channel_mixer(out, out, b.expand_ratio, b.activation, fused)))


def stride_2(b: BlockSpec) -> list[str]:
    return [] if b.stride == 2 else ["a downsample block must have stride 2"]


PARTS = ("spatial_downsample", "channel_downsample", "ffn")
register_block_kind(
    BlockKind(
        "downsample",
        build=lazy("roadmap_steps.repvit.blocks.layers:Downsample"),
        draw=draw,
        title="RepViT's downsampling: DW stride 2 -> 1x1 -> residual FFN",
        reads=("out_channels", "kernel_size", "stride", "expand_ratio", "activation"),
        check=lambda b: odd_kernel(b) + stride_2(b) + expands(b) + no_se(b),
        parts=dict.fromkeys(PARTS, "downsampling"),
    )
)
