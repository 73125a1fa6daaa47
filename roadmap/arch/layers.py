"""The building blocks, in training form, each leaf that can be folded exposing ``fuse()``.

Only modules whose deploy form differs define ``fuse()``; it returns the replacement module.
Containers (blocks, residual wrappers, the MLP) do not, so a walk that replaces each child by
``child.fuse()`` and recurses (``roadmap.arch.reparam.fuse`` and ``timm.utils.reparameterize_model``
alike) folds everything and leaves everything else exactly as it was. No BatchNorm is ever
dropped: every BN here sits in a ConvNorm, a RepDepthwise or a NormLinear, which fold it.

Shapes in comments are (batch, channels, height, width).
"""

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm, LayerNorm2d, SelectAdaptivePool2d, SEModule, create_act_layer
from torch import nn

from roadmap.arch.anatomy import hidden_width, se_width
from roadmap.arch.spec import BlockSpec, SESpec


def make_act(name: str) -> nn.Module:
    """An activation module by spec name ("relu", "hard_swish", "gelu", "none")."""
    if name == "none":
        return nn.Identity()
    return create_act_layer(name, inplace=True)


def make_se(width: int, se: SESpec) -> nn.Module:
    """timm's SEModule on ``width`` channels with the reduced width and gate the spec says."""
    return SEModule(width, rd_channels=se_width(width, se), gate_layer=se.gate)


def init_goog(m: nn.Module) -> None:
    """timm's ``_init_weight_goog`` (with ``fix_group_fanout``), how MobileNetV3's layers start:
    conv N(0, 2 / fan_out) with fan_out = k*k*out / groups, linear U(+-1/sqrt(out)), BatchNorm
    1 and 0, biases 0."""
    if isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Linear):
        bound = 1.0 / math.sqrt(m.weight.size(0))
        nn.init.uniform_(m.weight, -bound, bound)
        nn.init.zeros_(m.bias)


def bn_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """A BatchNorm in eval mode as ``x * scale + shift`` per channel: scale = gamma / sigma,
    shift = beta - mu * scale. Every fold here starts from it."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def same_padding(kernel_size: int, padding: int | None = None) -> int:
    """The padding asked for, else "same" for an odd kernel at stride 1."""
    return (kernel_size - 1) // 2 if padding is None else padding


@torch.no_grad()
def fold_bn_into_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A biased conv equal to ``bn(conv(x))`` in eval mode: W' = W*s, b' = beta + (b - mu)*s."""
    scale, _ = bn_affine(bn)  # (out,)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    fused.weight.copy_(conv.weight * scale[:, None, None, None])
    fused.bias.copy_(bn.bias + (bias - bn.running_mean) * scale)
    return fused


class ConvNorm(nn.Module):
    """kxk conv (no bias) -> BatchNorm -> activation. ``fuse()`` folds the BN into the conv."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        act: str = "none",
        bn_weight_init: float = 1.0,
        padding: int | None = None,
    ):
        super().__init__()
        padding = same_padding(kernel_size, padding)
        self.conv = nn.Conv2d(
            in_ch, out_ch, kernel_size, stride, padding, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_ch)
        nn.init.constant_(self.bn.weight, bn_weight_init)
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    def fuse(self) -> nn.Module:
        conv = fold_bn_into_conv(self.conv, self.bn)
        if isinstance(self.act, nn.Identity):
            return conv
        return nn.Sequential(OrderedDict(conv=conv, act=self.act))


LN_EPS = 1e-6  # LayerNorm's epsilon, as timm and the official ConvNeXt and DeiT code have it


class ConvLayer(ConvNorm):
    """The ``conv`` kind's layer: a kxk Conv-BN-activation as a block's spec gives it."""

    def __init__(self, in_ch: int, spec: BlockSpec):
        super().__init__(
            in_ch, spec.out_channels, spec.kernel_size, spec.stride, act=spec.activation
        )


def layer_norm(width: int, channels_last: bool = False) -> nn.Module:
    """ConvNeXt's LayerNorm over the channels, for (B, H, W, C) or (B, C, H, W) tensors."""
    return LayerNorm(width, eps=LN_EPS) if channels_last else LayerNorm2d(width, eps=LN_EPS)


def channel_norm(width: int, tokens: bool) -> nn.Module:
    """LayerNorm (eps 1e-6) over the channels of tokens (B, N, C) or of a map (B, C, H, W)."""
    return nn.LayerNorm(width, eps=LN_EPS) if tokens else layer_norm(width)


TOKEN_POOLS = ("token", "avg", "max", "")


class TokenPool(nn.Module):
    """Global pooling of tokens (B, N, C) -> (B, C), as timm's ViT pools: ``token`` takes the
    first (a class token), ``avg`` and ``max`` pool the tokens after the ``prefix`` ones, and
    ``""`` keeps them all."""

    def __init__(self, pool_type: str, prefix: int = 0):
        super().__init__()
        if pool_type not in TOKEN_POOLS:
            raise ValueError(f"tokens pool by {TOKEN_POOLS}, not {pool_type!r}")
        self.pool_type, self.prefix = pool_type, prefix

    def feat_mult(self) -> int:
        return 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool_type == "token":
            return x[:, 0]
        if self.pool_type == "avg":
            return x[:, self.prefix :].mean(1)
        if self.pool_type == "max":
            return x[:, self.prefix :].amax(1)
        return x


def global_pool(pool_type: str, tokens: bool, prefix: int = 0) -> nn.Module:
    """The head's pooling of a map (timm's ``SelectAdaptivePool2d``, (B, C, 1, 1)) or of
    tokens (:class:`TokenPool`)."""
    return TokenPool(pool_type, prefix) if tokens else SelectAdaptivePool2d(pool_type=pool_type)


class ConvLayerNorm(nn.Sequential):
    """kxk conv (with bias) -> LayerNorm over the channels -> activation. Nothing folds."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        act: str = "none",
        padding: int | None = None,
    ):
        padding = same_padding(kernel_size, padding)
        super().__init__(
            OrderedDict(
                conv=nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, groups=groups),
                norm=layer_norm(out_ch),
                act=make_act(act),
            )
        )


def conv_norm(
    in_ch: int,
    out_ch: int,
    kernel_size: int = 1,
    stride: int = 1,
    *,
    groups: int = 1,
    act: str = "none",
    norm: str | None = "batch",
    padding: int | None = None,
) -> nn.Module:
    """A conv with the norm named (``"batch"``, ``"layer"``, or None for a biased conv alone),
    then the activation. The conv has a bias exactly when no BatchNorm follows it."""
    if norm == "batch":
        return ConvNorm(in_ch, out_ch, kernel_size, stride, groups, act, padding=padding)
    if norm == "layer":
        return ConvLayerNorm(in_ch, out_ch, kernel_size, stride, groups, act, padding)
    padding = same_padding(kernel_size, padding)
    conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, groups=groups)
    return nn.Sequential(OrderedDict(conv=conv, act=make_act(act)))


class NormConv(nn.Module):
    """Norm -> conv with bias and no padding (ConvNeXt's downsampling layer: LayerNorm, then
    a 2x2 stride-2 conv). ``fuse()`` folds a BatchNorm forward into the conv, which is exact
    because without padding every input the conv sees has passed through the norm:
    W' = W * s (per input channel), b' = b + sum(W * t) with s, t the BN's scale and shift."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int, norm: str):
        super().__init__()
        self.norm = nn.BatchNorm2d(in_ch) if norm == "batch" else layer_norm(in_ch)
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.norm(x))

    def fuse(self) -> nn.Module:
        if not isinstance(self.norm, nn.BatchNorm2d):
            return self
        return fold_bn_before_conv(self.norm, self.conv)


@torch.no_grad()
def fold_bn_before_conv(bn: nn.BatchNorm2d, conv: nn.Conv2d) -> nn.Conv2d:
    """A biased conv equal to ``conv(bn(x))`` in eval mode, for a dense conv without padding
    (every input it sees has passed through the norm): W' = W * s per input channel,
    b' = b + sum(W * t), with s, t the BN's scale and shift."""
    if conv.groups != 1 or any(conv.padding):
        raise ValueError("a BatchNorm folds forward only into a dense conv without padding")
    scale, shift = bn_affine(bn)  # (in,)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    bias = conv.bias if conv.bias is not None else torch.zeros_like(fused.bias)
    fused.weight.copy_(conv.weight * scale[None, :, None, None])
    fused.bias.copy_(bias + (conv.weight * shift[None, :, None, None]).sum((1, 2, 3)))
    return fused


class RepDepthwise(nn.Module):
    """RepVGG-style depthwise token mixer: BN(DWkxk-BN(x) + DW1x1(x) + x), stride 1.

    ``fuse()`` turns the three branches and the outer BN into one kxk depthwise conv with a
    bias, for any odd k: the 1x1 kernel and the identity (a centre tap of 1) are zero-padded
    by (k - 1) / 2 on each side and added to the folded kxk kernel.
    """

    def __init__(self, width: int, kernel_size: int):
        super().__init__()
        self.conv = ConvNorm(width, width, kernel_size, groups=width)
        self.conv1 = nn.Conv2d(width, width, 1, groups=width, bias=True)
        self.bn = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x) + self.conv1(x) + x)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        conv = self.conv.fuse()  # kxk depthwise with bias, weight (C, 1, k, k)
        pad = [same_padding(conv.kernel_size[0])] * 4
        identity = torch.ones_like(self.conv1.weight)  # (C, 1, 1, 1)
        conv.weight += F.pad(self.conv1.weight + identity, pad)
        conv.bias += self.conv1.bias
        return fold_bn_into_conv(conv, self.bn)


class NormLinear(nn.Module):
    """BatchNorm1d -> Linear (RepViT's BN_Linear). ``fuse()`` folds the BN into the Linear."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(in_features)
        self.fc = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bn(x))

    @torch.no_grad()
    def fuse(self) -> nn.Linear:
        scale, shift = bn_affine(self.bn)  # (in,)
        fused = nn.Linear(
            self.fc.in_features,
            self.fc.out_features,
            device=self.fc.weight.device,
            dtype=self.fc.weight.dtype,
        )
        fused.weight.copy_(self.fc.weight * scale[None, :])
        fused.bias.copy_(self.fc.weight @ shift + self.fc.bias)
        return fused


class DistilledClassifier(nn.Module):
    """Two classifiers on the same features: ``head`` learns the labels, ``head_dist`` the
    teacher's predictions (DeiT's distillation head; timm's ``RepVitClassifier`` with
    ``distillation=True``). While ``distilled_training`` is set, a training-mode forward
    returns both logits for the distillation loss; otherwise their average, as evaluation uses
    it. ``fuse()`` folds each and averages them into one linear layer with the same output."""

    def __init__(self, head: nn.Module, head_dist: nn.Module):
        super().__init__()
        self.head = head
        self.head_dist = head_dist
        self.distilled_training = False

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        a, b = self.head(x), self.head_dist(x)
        if self.training and self.distilled_training and not torch.jit.is_scripting():
            return a, b
        return (a + b) / 2

    @torch.no_grad()
    def fuse(self) -> nn.Linear:
        a, b = (h.fuse() if hasattr(h, "fuse") else h for h in (self.head, self.head_dist))
        fused = nn.Linear(
            a.in_features, a.out_features, device=a.weight.device, dtype=a.weight.dtype
        )
        fused.weight.copy_((a.weight + b.weight) / 2)
        fused.bias.copy_((a.bias + b.bias) / 2)
        return fused


class Residual(nn.Module):
    """x + fn(x). The skip survives fusion: only what is inside ``fn`` folds."""

    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fn(x)


class Mlp(nn.Sequential):
    """1x1 Conv-BN expand -> activation -> 1x1 Conv-BN project (the channel mixer / FFN).

    When it sits in a residual, the last BN starts at zero so the block starts as identity.
    """

    def __init__(self, in_ch: int, hidden: int, out_ch: int, act: str, zero_init_last: bool):
        super().__init__(
            OrderedDict(
                conv1=ConvNorm(in_ch, hidden, 1),
                act=make_act(act),
                conv2=ConvNorm(hidden, out_ch, 1, bn_weight_init=0.0 if zero_init_last else 1.0),
            )
        )


def channel_mixer(in_ch: int, out_ch: int, expand_ratio: float, act: str) -> nn.Module:
    """An Mlp, wrapped in a residual when the width is unchanged."""
    hidden = hidden_width(in_ch, expand_ratio)
    if in_ch == out_ch:
        return Residual(Mlp(in_ch, hidden, out_ch, act, zero_init_last=True))
    return Mlp(in_ch, hidden, out_ch, act, zero_init_last=False)
