"""Spec -> nn.Module. The builder adds no behaviour of its own: every choice is in the spec.

Module names follow spec paths: ``model.stages[2].blocks[3]`` is built from
``spec.stages[2].blocks[3]``, and its token mixer is ``stages.2.blocks.3.token_mixer``.

Initialization (the paper is silent; we follow the two codebases the endpoints come from):
convs use Kaiming-normal with fan-out (timm's MobileNetV3 init), BatchNorms start at weight 1 /
bias 0 except the last BN of a residual MLP, which starts at 0 (official RepViT), and the
classifier's Linear uses a truncated normal with std 0.02 (official RepViT).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from roadmap.errors import RoadmapError
from roadmap.layers import (
    ConvNorm,
    NormLinear,
    RepDepthwise,
    channel_mixer,
    hidden_width,
    make_act,
    make_se,
)
from roadmap.spec import BlockSpec, HeadSpec, NetSpec, StageSpec, replace, validate


class ConvLayer(ConvNorm):
    """``kind="conv"``: a kxk Conv-BN-activation layer."""

    def __init__(self, in_ch: int, spec: BlockSpec):
        super().__init__(
            in_ch, spec.out_channels, spec.kernel_size, spec.stride, act=spec.activation
        )


class InvertedResidual(nn.Module):
    """``kind="inverted_residual"``: MobileNetV3's block.

    1x1 expand (absent when expand_ratio == 1) -> kxk DW -> [SE on the expanded width] ->
    1x1 project; residual when stride 1 and the width is unchanged.
    """

    def __init__(self, in_ch: int, spec: BlockSpec):
        super().__init__()
        mid = hidden_width(in_ch, spec.expand_ratio)
        act = spec.activation
        self.conv_pw = ConvNorm(in_ch, mid, 1, act=act) if spec.expand_ratio != 1 else nn.Identity()
        mid = mid if spec.expand_ratio != 1 else in_ch
        self.conv_dw = ConvNorm(mid, mid, spec.kernel_size, spec.stride, groups=mid, act=act)
        self.se = make_se(mid, spec.se) if spec.use_se else nn.Identity()
        self.conv_pwl = ConvNorm(mid, spec.out_channels, 1)
        self.has_skip = spec.stride == 1 and in_ch == spec.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_pwl(self.se(self.conv_dw(self.conv_pw(x))))
        return x + y if self.has_skip else y


class RepViTBlock(nn.Module):
    """``kind="repvit"``: token mixer (spatial, per channel) then channel mixer (1x1 MLP).

    Token mixer: RepDepthwise at stride 1, a plain kxk DW Conv-BN at stride 2. SE (optional)
    acts on the block's input width, right after the token mixer.
    """

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
    """``kind="downsample"``: DW kxk stride 2 -> 1x1 to the new width -> residual FFN."""

    def __init__(self, in_ch: int, spec: BlockSpec):
        super().__init__()
        out = spec.out_channels
        self.spatial_downsample = ConvNorm(in_ch, in_ch, spec.kernel_size, 2, groups=in_ch)
        self.channel_downsample = ConvNorm(in_ch, out, 1)
        self.ffn = channel_mixer(out, out, spec.expand_ratio, spec.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn(self.channel_downsample(self.spatial_downsample(x)))


BLOCKS: dict[str, type[nn.Module]] = {
    "conv": ConvLayer,
    "inverted_residual": InvertedResidual,
    "repvit": RepViTBlock,
    "downsample": Downsample,
}


class Head(nn.Module):
    """[1x1 Conv-BN-act] -> global average pool -> [1x1 conv + act] -> dropout -> [BN] -> linear."""

    def __init__(self, in_ch: int, spec: HeadSpec, num_classes: int):
        super().__init__()
        self.pre_pool = nn.Identity()
        if spec.pre_pool_channels:
            self.pre_pool = ConvNorm(in_ch, spec.pre_pool_channels, 1, act=spec.activation)
            in_ch = spec.pre_pool_channels
        self.hidden, self.act = nn.Identity(), nn.Identity()
        if spec.hidden_channels:
            self.hidden = nn.Conv2d(in_ch, spec.hidden_channels, 1, bias=True)
            self.act = make_act(spec.activation)
            in_ch = spec.hidden_channels
        self.num_features = in_ch
        self.drop = nn.Dropout(spec.dropout)
        self.classifier = make_classifier(in_ch, num_classes, spec.norm)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pre_pool(x)
        x = x.mean((2, 3), keepdim=True)  # (B, C, H, W) -> (B, C, 1, 1)
        x = self.act(self.hidden(x)).flatten(1)  # (B, C', 1, 1) -> (B, C')
        x = self.drop(x)
        return x if pre_logits else self.classifier(x)


def make_classifier(in_features: int, num_classes: int, norm: bool) -> nn.Module:
    """The last layer: [BN ->] linear."""
    return NormLinear(in_features, num_classes) if norm else nn.Linear(in_features, num_classes)


class Stage(nn.Module):
    """A stage: its downsampling layers, then its blocks."""

    def __init__(self, in_ch: int, spec: StageSpec):
        super().__init__()
        self.downsample, in_ch = build_sequence(in_ch, spec.downsample)
        self.blocks, self.out_channels = build_sequence(in_ch, spec.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


def build_sequence(in_ch: int, blocks: tuple[BlockSpec, ...]) -> tuple[nn.Sequential, int]:
    """Build blocks in order, threading the width; returns the sequence and its output width."""
    modules = []
    for spec in blocks:
        modules.append(BLOCKS[spec.kind](in_ch, spec))
        in_ch = spec.out_channels
    return nn.Sequential(*modules), in_ch


class RoadmapNet(nn.Module):
    """A network built from a :class:`NetSpec`; ``model.spec`` is the spec it was built from."""

    def __init__(self, spec: NetSpec):
        super().__init__()
        validate(spec)
        self.spec = spec
        self.num_classes = spec.num_classes
        self.stem, width = build_sequence(spec.in_channels, spec.stem)
        stages = []
        for stage_spec in spec.stages:
            stages.append(Stage(width, stage_spec))
            width = stages[-1].out_channels
        self.stages = nn.Sequential(*stages)
        self.head = Head(width, spec.head, spec.num_classes)
        self.num_features = self.head.num_features
        self.apply(_init_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))  # (B, 3, H, W) -> (B, C, H/32, W/32)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Head on the features; ``pre_logits`` stops before the classifier (timm's API)."""
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The last layer (timm's API)."""
        return self.head.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh classifier for ``num_classes`` outputs; ``model.spec`` follows (timm's API).

        Args:
            num_classes: new number of classes (>= 1; use ``forward_head(x, pre_logits=True)``
                for features).
            global_pool: only "avg" (the head's pooling) is supported.
        """
        if global_pool not in (None, "avg"):
            raise RoadmapError(f"global_pool {global_pool!r}: this head only average-pools")
        self.spec = validate(replace(self.spec, num_classes=num_classes))
        self.num_classes = num_classes
        classifier = make_classifier(self.num_features, num_classes, self.spec.head.norm)
        self.head.classifier = classifier.apply(_init_weights)


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        nn.init.zeros_(m.bias)


def build(spec: NetSpec) -> RoadmapNet:
    """Build the training-form network for ``spec``."""
    return RoadmapNet(spec)


def build_model(
    upto: str | None = None,
    *,
    steps: Sequence[str] | None = None,
    skip: Iterable[str] = (),
    num_classes: int = 1000,
) -> RoadmapNet:
    """The training-form network after the resolved steps (arguments as in ``build_spec``)."""
    from roadmap.registry import build_spec

    return build(build_spec(upto, steps=steps, skip=skip, num_classes=num_classes))
