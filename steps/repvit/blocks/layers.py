"""The ``nn.Module`` side of RepViT's roadmap's block kinds: what the declarations in
``inverted_residual``, ``repvit`` and ``downsample`` build (through
:func:`~roadmap.arch.blocks.lazy`), kept apart so that checking a spec imports no torch."""

from __future__ import annotations

import torch
from torch import nn

from roadmap.arch.layers import ConvNorm, RepDepthwise, channel_mixer, init_goog, make_se
from roadmap.arch.spec import BlockSpec
from roadmap_steps.repvit.blocks.inverted_residual import expanded, has_skip


class InvertedResidual(nn.Module):
    """MobileNetV3's block: 1x1 expand -> kxk DW -> [SE] -> 1x1 project, residual when the
    shape allows."""

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


def init_inverted_residual(module: nn.Module) -> None:
    """timm's ``_init_weight_goog`` on every layer of the block."""
    for m in module.modules():
        init_goog(m)


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


class Downsample(nn.Module):
    """DW kxk stride 2 -> 1x1 to the new width -> residual FFN."""

    def __init__(self, in_ch: int, spec: BlockSpec):
        super().__init__()
        out = spec.out_channels
        self.spatial_downsample = ConvNorm(in_ch, in_ch, spec.kernel_size, 2, groups=in_ch)
        self.channel_downsample = ConvNorm(in_ch, out, 1)
        self.ffn = channel_mixer(out, out, spec.expand_ratio, spec.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn(self.channel_downsample(self.spatial_downsample(x)))
