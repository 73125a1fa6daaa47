"""The ``nn.Module`` side of the transformer's block kinds: what the declarations in
``transformer`` build (through :func:`~roadmap.arch.blocks.lazy`), kept apart so that checking a
spec imports no torch. How each starts is told in that module's docstring."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from roadmap.arch import anatomy
from roadmap.arch.layers import (
    LN_EPS,
    fold_bn_before_conv,
    fold_bn_into_conv,
    layer_norm,
    make_act,
)
from roadmap.arch.spec import BlockSpec
from roadmap.errors import RoadmapError
from roadmap_steps.visformer.blocks.transformer import (
    PATCH_EMBED,
    POSITION,
    TRANSFORMER,
    head_width,
)


def make_norm(width: int, norm: str, tokens: bool) -> nn.Module:
    """LayerNorm (eps 1e-6) over the channels of tokens or of a map, or BatchNorm on a map."""
    if norm == "batch":
        return nn.BatchNorm2d(width)
    return nn.LayerNorm(width, eps=LN_EPS) if tokens else layer_norm(width)


# --- initialization ---------------------------------------------------------------------------


def init_vit(module: nn.Module) -> None:
    """timm's ViT: linear layers truncated normal (std 0.02), biases zero; convs unchanged."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def init_visformer(module: nn.Module) -> None:
    """Visformer's ``conv_init``: convs Kaiming-normal (fan out, ReLU gain), linear layers
    truncated normal (std 0.02), biases zero."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
        if isinstance(m, nn.Conv2d | nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)


def init_by_form(module: nn.Module) -> None:
    """As the codebase of the module's form starts it: timm's ViT for tokens, Visformer's for
    maps (a plain conv before a map-form network, its stem, starts as Visformer's)."""
    (init_vit if getattr(module, "tokens", False) else init_visformer)(module)


# --- patch embedding, class token, position embedding ----------------------------------------


class PatchEmbed(nn.Module):
    """kxk stride-k conv with a bias -> [flatten to tokens] -> [norm]."""

    def __init__(self, in_ch: int, b: BlockSpec):
        super().__init__()
        k, out = b.kernel_size, b.out_channels
        self.tokens = bool(PATCH_EMBED.value(b, "tokens"))
        self.proj = nn.Conv2d(in_ch, out, k, k)
        norm = PATCH_EMBED.value(b, "norm")
        self.norm = make_norm(out, norm, self.tokens) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)  # (B, C, H/k, W/k)
        if self.tokens:
            x = x.flatten(2).transpose(1, 2)  # (B, N, C)
        return self.norm(x)

    def fuse(self) -> nn.Module:
        """Fold a BatchNorm into the patch conv (exact: it follows the conv)."""
        if isinstance(self.norm, nn.BatchNorm2d):
            self.proj, self.norm = fold_bn_into_conv(self.proj, self.norm), nn.Identity()
        return self


class ClassToken(nn.Module):
    """Prepends one learned token to the sequence: (B, N, C) -> (B, 1 + N, C)."""

    tokens = True

    def __init__(self, in_ch: int, b: BlockSpec):
        super().__init__()
        keeps_width("a class token", in_ch, b)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, in_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)


def init_class_token(module: nn.Module) -> None:
    nn.init.normal_(module.cls_token, std=1e-6)  # timm's ViT


def keeps_width(what: str, in_ch: int, b: BlockSpec) -> None:
    """The width a block cannot change is checked where it is known: when it is built."""
    if in_ch != b.out_channels:
        raise RoadmapError(
            f"{what} keeps the width: {in_ch} channels come in, out_channels says {b.out_channels}"
        )


def add_position(x: torch.Tensor, pos: torch.Tensor, grid: int, prefix: int) -> torch.Tensor:
    """``x + pos``, the embedding resampled (bicubic, as timm's ``resample_abs_pos_embed``)
    when ``x`` is another grid than ``grid`` x ``grid``; tokens keep their ``prefix`` ones."""
    if x.ndim == 4:
        if x.shape[-2] != grid or x.shape[-1] != grid:
            pos = F.interpolate(
                pos, size=(x.shape[-2], x.shape[-1]), mode="bicubic", align_corners=False
            )
        return x + pos
    side = int(math.sqrt(x.shape[1] - prefix))
    if side != grid:
        head, rest = pos[:, :prefix], pos[:, prefix:]
        rest = rest.reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
        rest = F.interpolate(rest, size=(side, side), mode="bicubic", align_corners=False)
        pos = torch.cat((head, rest.permute(0, 2, 3, 1).reshape(1, side * side, -1)), dim=1)
    return x + pos


torch.fx.wrap("add_position")  # it branches on the size it meets: one call to torch.fx


class PositionEmbedding(nn.Module):
    """Adds a learned embedding for a ``grid`` x ``grid`` map (and ``prefix`` tokens before it,
    in token form); resampled bicubically when the map it meets has another size."""

    def __init__(self, in_ch: int, b: BlockSpec):
        super().__init__()
        v = lambda name: POSITION.value(b, name)  # noqa: E731
        self.tokens, self.grid, self.prefix = bool(v("tokens")), v("grid"), v("prefix")
        keeps_width("a position embedding", in_ch, b)
        shape = (
            (1, self.prefix + self.grid**2, in_ch)
            if self.tokens
            else (1, in_ch, self.grid, self.grid)
        )
        self.pos_embed = nn.Parameter(torch.zeros(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return add_position(x, self.pos_embed, self.grid, self.prefix)


def init_position(module: nn.Module) -> None:
    nn.init.trunc_normal_(module.pos_embed, std=0.02)  # timm's ViT and Visformer alike


# --- the transformer block --------------------------------------------------------------------


class Attention(nn.Module):
    """Multi-head self-attention: qkv projection -> softmax(q k^T / sqrt(d)) v -> projection.

    In token form the projections are linear layers on (B, N, C); in map form 1x1 convs on
    (B, C, H, W), whose positions are the tokens.
    """

    def __init__(self, width: int, heads: int, head_dim: int, bias: bool, tokens: bool):
        super().__init__()
        self.heads, self.head_dim, self.tokens = heads, head_dim, tokens
        inner = heads * head_dim
        if tokens:
            self.qkv = nn.Linear(width, 3 * inner, bias=bias)
            self.proj = nn.Linear(inner, width, bias=bias)
        else:
            self.qkv = nn.Conv2d(width, 3 * inner, 1, bias=bias)
            self.proj = nn.Conv2d(inner, width, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tokens:  # timm's ViT
            b, n, _ = x.shape
            qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)  # (B, heads, N, d) each
            y = F.scaled_dot_product_attention(q, k, v)
            return self.proj(y.transpose(1, 2).reshape(b, n, -1))
        b, _, h, w = x.shape  # timm's Visformer
        qkv = self.qkv(x).reshape(b, 3, self.heads, self.head_dim, -1).permute(1, 0, 2, 4, 3)
        q, k, v = qkv.unbind(0)  # (B, heads, HW, d) each
        y = F.scaled_dot_product_attention(q.contiguous(), k.contiguous(), v.contiguous())
        return self.proj(y.permute(0, 1, 3, 2).reshape(b, -1, h, w))


class TokenMlp(nn.Module):
    """Linear expand -> GELU -> linear project, on tokens (timm's ViT ``Mlp``)."""

    def __init__(self, width: int, hidden: int, b: BlockSpec, bias: bool):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden, bias=bias)
        self.act = make_act(b.activation)
        self.fc2 = nn.Linear(hidden, width, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ConvMlp(nn.Module):
    """1x1 expand -> GELU -> [kxk conv (groups) -> GELU] -> 1x1 project, on a map (timm's
    Visformer ``SpatialMlp``)."""

    def __init__(self, width: int, hidden: int, b: BlockSpec, bias: bool):
        super().__init__()
        self.conv1, self.act1 = nn.Conv2d(width, hidden, 1, bias=bias), make_act(b.activation)
        self.conv2: nn.Module | None = None
        self.act2: nn.Module = nn.Identity()
        if TRANSFORMER.value(b, "spatial"):
            k, groups = b.kernel_size, TRANSFORMER.value(b, "groups")
            self.conv2 = nn.Conv2d(hidden, hidden, k, 1, k // 2, groups=groups, bias=bias)
            self.act2 = make_act(b.activation)
        self.conv3 = nn.Conv2d(hidden, width, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.conv1(x))
        if self.conv2 is not None:
            x = self.act2(self.conv2(x))
        return self.conv3(x)


class TransformerBlock(nn.Module):
    """x + attn(norm1(x)), then x + mlp(norm2(x)) (the attention half may be absent)."""

    def __init__(self, in_ch: int, b: BlockSpec):
        super().__init__()
        v = lambda name: TRANSFORMER.value(b, name)  # noqa: E731
        keeps_width("a transformer block", in_ch, b)
        self.tokens = bool(v("tokens"))
        norm, bias = v("norm"), bool(v("bias"))
        self.norm1: nn.Module | None = None
        self.attn: Attention | None = None
        if v("attention"):
            self.norm1 = make_norm(in_ch, norm, self.tokens)
            head_dim = head_width(in_ch, v("heads"), v("head_dim_ratio"))
            self.attn = Attention(in_ch, v("heads"), head_dim, bias, self.tokens)
        self.norm2 = make_norm(in_ch, norm, self.tokens)
        hidden = anatomy.hidden_width(in_ch, b.expand_ratio)
        mlp = TokenMlp if self.tokens else ConvMlp
        self.mlp = mlp(in_ch, hidden, b, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.attn is not None and self.norm1 is not None:
            x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    def fuse(self) -> nn.Module:
        """Fold each BatchNorm into the 1x1 conv it feeds (the qkv projection, the MLP's
        first conv): exact, as a 1x1 conv has no padding."""
        if self.attn is not None and isinstance(self.norm1, nn.BatchNorm2d):
            self.attn.qkv, self.norm1 = (
                fold_bn_before_conv(self.norm1, self.attn.qkv),
                nn.Identity(),
            )
        if isinstance(self.norm2, nn.BatchNorm2d) and isinstance(self.mlp, ConvMlp):
            self.mlp.conv1, self.norm2 = (
                fold_bn_before_conv(self.norm2, self.mlp.conv1),
                nn.Identity(),
            )
        return self
