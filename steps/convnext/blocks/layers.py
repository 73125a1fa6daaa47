"""The ``nn.Module`` side of the ConvNeXt roadmap's block kinds (what the declarations in
``resnet`` and ``convnext`` build, through :func:`~roadmap.arch.blocks.lazy`): kept apart so
that reading and checking a spec imports no torch."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from roadmap.arch import anatomy
from roadmap.arch.blocks import changes_shape
from roadmap.arch.layers import (
    ConvNorm,
    NormConv,
    conv_norm,
    fold_bn_into_conv,
    layer_norm,
    make_act,
)
from roadmap.arch.spec import BlockSpec
from roadmap_steps.convnext.blocks.convnext import CONVNEXT, MERGING, PATCHIFY
from roadmap_steps.convnext.blocks.resnet import BOTTLENECK, middle

# --- ResNet ------------------------------------------------------------------------------------


def init_resnet(module: nn.Module) -> None:
    """timm's ``ResNet.init_weights``: every conv Kaiming-normal, fan out, ReLU gain."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


class Bottleneck(nn.Module):
    """1x1 -> kxk (stride, groups) -> 1x1, projection shortcut, activation after the sum."""

    def __init__(self, in_ch: int, spec: BlockSpec):
        super().__init__()
        mid, out, act = middle(spec), spec.out_channels, spec.activation
        groups = mid if BOTTLENECK.value(spec, "depthwise") else 1
        self.conv1 = ConvNorm(in_ch, mid, 1, act=act)
        self.conv2 = ConvNorm(mid, mid, spec.kernel_size, spec.stride, groups, act)
        self.conv3 = ConvNorm(mid, out, 1, bn_weight_init=0.0)  # starts as the shortcut
        self.shortcut = ConvNorm(in_ch, out, 1, spec.stride) if changes_shape(in_ch, spec) else None
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3(self.conv2(self.conv1(x)))
        return self.act(y + (x if self.shortcut is None else self.shortcut(x)))


class MaxPool(nn.MaxPool2d):
    """kxk max pooling with "same" padding; the width must stay as it is."""

    def __init__(self, in_ch: int, spec: BlockSpec):
        if spec.out_channels != in_ch:
            raise ValueError(f"a max_pool keeps the width ({in_ch}), not {spec.out_channels}")
        k = spec.kernel_size
        super().__init__(k, spec.stride, padding=k // 2)


# --- ConvNeXt ----------------------------------------------------------------------------------


def init_convnext(module: nn.Module) -> None:
    """timm's ConvNeXt ``_init_weights``: conv and linear weights N(0, 0.02) truncated at
    +-2, biases zero."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class Patchify(nn.Sequential):
    """kxk stride-k conv (a bias unless BatchNorm follows) -> norm. ``fuse()`` folds a
    BatchNorm and keeps the conv's name (``stem.0.conv``, timm's ``first_conv``)."""

    def __init__(self, in_ch: int, b: BlockSpec):
        k, norm = b.kernel_size, PATCHIFY.value(b, "norm")
        batch = norm == "batch"
        conv = nn.Conv2d(in_ch, b.out_channels, k, k, bias=not batch)
        norm_layer = nn.BatchNorm2d(b.out_channels) if batch else layer_norm(b.out_channels)
        super().__init__(OrderedDict(conv=conv, norm=norm_layer))

    def fuse(self) -> nn.Module:
        if not isinstance(self.norm, nn.BatchNorm2d):
            return self
        return nn.Sequential(OrderedDict(conv=fold_bn_into_conv(self.conv, self.norm)))


def build_merging(in_ch: int, b: BlockSpec) -> nn.Module:
    k = b.kernel_size
    return NormConv(in_ch, b.out_channels, k, k, MERGING.value(b, "norm"))


class ConvNeXtBlock(nn.Module):
    """DW kxk -> norm -> 1x1 expand -> act -> 1x1 project -> layer scale -> + shortcut, with
    the optional norms and activations of the ResNet-era forms (see the module docstring)."""

    def __init__(self, in_ch: int, spec: BlockSpec):
        super().__init__()
        v = lambda name: CONVNEXT.value(spec, name)  # noqa: E731
        out, k, s, act = spec.out_channels, spec.kernel_size, spec.stride, spec.activation
        mid = anatomy.hidden_width(out, spec.expand_ratio)
        every_norm, every_act = v("norms") == "all", v("acts") == "all"
        self.channels_last = v("norm") == "layer"
        if self.channels_last:  # timm's form: the 1x1 convs are linear layers on (B, H, W, C)
            self.conv_dw = nn.Conv2d(in_ch, in_ch, k, s, k // 2, groups=in_ch)
            self.norm = nn.Sequential(
                layer_norm(in_ch, True), make_act(act if every_act else "none")
            )
            self.mlp = nn.Sequential(
                OrderedDict(
                    fc1=nn.Linear(in_ch, mid),
                    norm1=layer_norm(mid, True) if every_norm else nn.Identity(),
                    act=make_act(act),
                    fc2=nn.Linear(mid, out),
                    norm2=layer_norm(out, True) if every_norm else nn.Identity(),
                )
            )
        else:  # BatchNorm sits in ConvNorms, which fold it
            dw_act = act if every_act else "none"
            self.conv_dw = conv_norm(in_ch, in_ch, k, s, groups=in_ch, act=dw_act)
            self.norm = nn.Identity()
            pw_norm = "batch" if every_norm else None
            self.mlp = nn.Sequential(
                OrderedDict(
                    fc1=conv_norm(in_ch, mid, act=act, norm=pw_norm),
                    fc2=conv_norm(mid, out, norm=pw_norm),
                )
            )
        scale = v("layer_scale")
        self.gamma = nn.Parameter(scale * torch.ones(out)) if scale else None
        self.shortcut = (
            conv_norm(in_ch, out, 1, s, norm=v("norm")) if changes_shape(in_ch, spec) else None
        )
        self.act = make_act(act if every_act else "none")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_dw(x)
        if self.channels_last:
            y = y.permute(0, 2, 3, 1)  # (B, C, H, W) -> (B, H, W, C)
        y = self.mlp(self.norm(y))
        if self.channels_last:
            y = y.permute(0, 3, 1, 2)
        if self.gamma is not None:
            y = y.mul(self.gamma.reshape(1, -1, 1, 1))
        return self.act(y + (x if self.shortcut is None else self.shortcut(x)))
