"""The transformer's kinds: ``patch_embed``, ``class_token``, ``position_embedding``,
``transformer``.

A Vision Transformer works on **tokens**, a (batch, tokens, channels) tensor: the patch
embedding cuts the image into patches and flattens them, a class token is prepended, a learned
position embedding is added, and every block mixes the tokens by self-attention and each token's
channels by an MLP. Once the class token is gone the tokens are simply the positions of a
feature map, and Visformer's code writes the same blocks on (batch, channels, height, width)
**maps**, their linear layers as 1x1 convolutions (the same function). Every kind here has a
``tokens`` field that says which of the two forms it is built in: ``True`` in DeiT-S, ``False``
from the transition's first step on.

- ``patch_embed``: a kxk conv with stride k (with a bias, as both codebases have it), then the
  optional ``norm`` (``batch``, ``layer`` or ``""``: Visformer-S has BatchNorm there, DeiT-S
  none); with ``tokens`` the map is flattened into tokens.
- ``class_token``: prepends one learned token (``cls_token``, 1 x C); the head reads it back
  (``HeadSpec.pool: token``).
- ``position_embedding``: adds a learned embedding (``pos_embed``) for a ``grid`` x ``grid``
  map, plus ``prefix`` tokens before it (DeiT's covers its class token too). Fed another
  resolution (64 px training), it is resampled bicubically to the grid it meets, as timm's
  ``dynamic_img_size`` does (without its antialiasing, which ONNX and ExecuTorch lack), so
  the parameters stay those of the 224 px network.
- ``transformer``: pre-norm self-attention then a pre-norm MLP, each added to its input.
  Its fields: ``heads``; ``head_dim_ratio`` (each head's width is ``width // heads *
  ratio``: Visformer's first stage halves it); ``attention`` (False: the MLP alone, the
  transition's last step); ``norm`` (``layer``: LayerNorm over the channels, eps 1e-6;
  ``batch``: BatchNorm); ``bias`` (the qkv, projection and MLP layers' biases: DeiT-S has
  them, Visformer's code does not); ``spatial`` (a kxk conv, ``kernel_size``, between the
  MLP's two 1x1 convs, with ``groups``). ``expand_ratio`` is the MLP's hidden width ratio.
  Attention runs through ``torch.nn.functional.scaled_dot_product_attention``, as timm's does.

Each starts as its codebase starts it: in token form as timm's ViT (``init_weights_vit_timm``:
linear layers truncated normal, std 0.02, biases zero; the patch conv with PyTorch's defaults;
the class token normal, std 1e-6; the position embedding truncated normal, std 0.02); in map
form as Visformer's (``conv_init=True``: every conv Kaiming-normal, fan out; biases zero;
position embeddings truncated normal, std 0.02).

A BatchNorm before a 1x1 conv (the blocks are pre-norm) folds into it, and one after the patch
conv folds into that conv: the deploy form of the BatchNorm steps has no norm left.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from roadmap.arch import anatomy
from roadmap.arch.anatomy import Box, Node, Res, Seq
from roadmap.arch.blocks import BlockKind, no_se, register_block_kind
from roadmap.arch.layers import (
    LN_EPS,
    fold_bn_before_conv,
    fold_bn_into_conv,
    layer_norm,
    make_act,
)
from roadmap.arch.spec import BlockSpec
from roadmap.errors import RoadmapError

NORMS = ("layer", "batch")


def make_norm(width: int, norm: str, tokens: bool) -> nn.Module:
    """LayerNorm (eps 1e-6) over the channels of tokens or of a map, or BatchNorm on a map."""
    if norm == "batch":
        return nn.BatchNorm2d(width)
    return nn.LayerNorm(width, eps=LN_EPS) if tokens else layer_norm(width)


def _norm_label(norm: str) -> str:
    return {"batch": "BN", "layer": "LN"}.get(norm, "")


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


# --- patch embedding --------------------------------------------------------------------------


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


def draw_patch_embed(b: BlockSpec, in_ch: int, fused: bool) -> Node:
    k, out, norm = b.kernel_size, b.out_channels, PATCH_EMBED.value(b, "norm")
    layers: tuple[Box, ...] = (
        Box("conv", f"Conv {k}x{k} {in_ch}->{out}, stride {k} (patches)", (in_ch, out)),
    )
    if PATCH_EMBED.value(b, "tokens"):
        layers += (Box("token", "flatten to tokens"),)
    if norm and not (fused and norm == "batch"):
        layers += (Box("bn", _norm_label(norm)),)
    return Seq(layers)


def _patch_checks(b: BlockSpec) -> list[str]:
    problems = no_se(b)
    if b.kernel_size < 1 or b.stride != b.kernel_size:
        problems.append(f"patches do not overlap: stride must equal kernel_size ({b.kernel_size})")
    norm = PATCH_EMBED.value(b, "norm")
    if norm not in ("", *NORMS):
        problems.append(f"norm must be one of {('', *NORMS)}, got {norm!r}")
    if norm == "batch" and PATCH_EMBED.value(b, "tokens"):
        problems.append("a BatchNorm needs the map form (tokens: false)")
    return problems


# --- class token ------------------------------------------------------------------------------


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


# --- position embedding -----------------------------------------------------------------------


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


def draw_position(b: BlockSpec, in_ch: int, fused: bool) -> Node:
    grid = POSITION.value(b, "grid")
    return Seq((Box("token", f"+ position embedding ({grid}x{grid}, {in_ch})"),))


def _position_checks(b: BlockSpec) -> list[str]:
    problems = no_se(b)
    if not 1 <= POSITION.value(b, "grid") <= 1024:
        problems.append("grid must be 1 to 1024 positions a side")
    if not 0 <= POSITION.value(b, "prefix") <= 64:
        problems.append("prefix must be 0 to 64 tokens")
    if POSITION.value(b, "prefix") and not POSITION.value(b, "tokens"):
        problems.append("prefix tokens exist only in the token form (tokens: true)")
    return problems


# --- the transformer block --------------------------------------------------------------------


def head_width(width: int, heads: int, ratio: float) -> int:
    """One head's width: Visformer's rule, ``round(width // heads * ratio)`` (ViT's at 1)."""
    return round(width // heads * ratio)


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


def draw_transformer(b: BlockSpec, in_ch: int, fused: bool) -> Node:
    v = lambda name: TRANSFORMER.value(b, name)  # noqa: E731
    tokens, norm = v("tokens"), v("norm")
    keep_norm = not (fused and norm == "batch")
    norm_box = (Box("bn", _norm_label(norm)),) if keep_norm else ()
    linear = "linear" if tokens else "conv"
    halves: list[Node] = []
    if v("attention"):
        heads = v("heads")
        d = head_width(in_ch, heads, v("head_dim_ratio"))
        inner = heads * d
        halves.append(
            Res(
                Seq(
                    (
                        *norm_box,
                        Box(linear, f"qkv {in_ch}->{3 * inner}", (in_ch, 3 * inner)),
                        Box("attention", f"self-attention, {heads} heads x {d}"),
                        Box(linear, f"proj {inner}->{in_ch}", (inner, in_ch)),
                    )
                )
            )
        )
    hidden = anatomy.hidden_width(in_ch, b.expand_ratio)
    name = "Linear" if tokens else "1x1 conv"
    mlp: tuple[Box, ...] = (
        *norm_box,
        Box(linear, f"{name} {in_ch}->{hidden}", (in_ch, hidden)),
        *anatomy.activation(b.activation),
    )
    if not tokens and v("spatial"):
        k, groups = b.kernel_size, v("groups")
        where = f", {groups} groups" if groups > 1 else ""
        mlp += (Box("conv", f"Conv {k}x{k} {hidden}{where}", (hidden, hidden)),)
        mlp += anatomy.activation(b.activation)
    mlp += (Box(linear, f"{name} {hidden}->{in_ch}", (hidden, in_ch)),)
    halves.append(Res(Seq(mlp)))
    return Seq(tuple(halves))


def _transformer_checks(b: BlockSpec) -> list[str]:
    v = lambda name: TRANSFORMER.value(b, name)  # noqa: E731
    problems = no_se(b)
    if v("norm") not in NORMS:
        problems.append(f"norm must be one of {NORMS}, got {v('norm')!r}")
    if v("norm") == "batch" and v("tokens"):
        problems.append("a BatchNorm needs the map form (tokens: false)")
    if b.stride != 1:
        problems.append(f"a transformer block keeps the resolution: stride 1, got {b.stride}")
    if not 1 <= v("heads") <= 1024:
        problems.append(f"heads must be 1 to 1024, got {v('heads')}")
    elif b.out_channels % v("heads"):
        problems.append(f"{v('heads')} heads do not divide the width {b.out_channels}")
    elif v("attention") and head_width(b.out_channels, v("heads"), v("head_dim_ratio")) < 1:
        problems.append("head_dim_ratio leaves the heads no width")
    if not 0 < v("head_dim_ratio") <= 4:
        problems.append(f"head_dim_ratio must be in (0, 4], got {v('head_dim_ratio')}")
    if not 0 < b.expand_ratio <= 16:
        problems.append(f"expand_ratio (the MLP's) must be in (0, 16], got {b.expand_ratio}")
    if v("spatial"):
        hidden = anatomy.hidden_width(b.out_channels, b.expand_ratio)
        if v("tokens"):
            problems.append("a spatial MLP needs the map form (tokens: false)")
        if b.kernel_size < 1 or b.kernel_size % 2 == 0:
            problems.append(f"kernel_size must be odd, got {b.kernel_size}")
        if v("groups") < 1 or hidden % v("groups"):
            problems.append(f"groups ({v('groups')}) must divide the MLP's width ({hidden})")
    return problems


TOKENS = {"tokens": ("bool", False)}
PATCH_EMBED = register_block_kind(
    BlockKind(
        "patch_embed",
        build=PatchEmbed,
        draw=draw_patch_embed,
        title="ViT's patch embedding: kxk stride-k conv, as tokens or a map, optional norm",
        reads=("out_channels", "kernel_size", "stride"),
        extra={**TOKENS, "norm": ("str", "")},
        check=_patch_checks,
        parts={"proj": "downsampling", "norm": "downsampling"},
        init=init_by_form,
        first_conv="proj",
    )
)
CLASS_TOKEN = register_block_kind(
    BlockKind(
        "class_token",
        build=ClassToken,
        draw=lambda b, in_ch, fused: Seq((Box("token", f"prepend class token ({in_ch})"),)),
        title="ViT's class token, prepended to the tokens",
        reads=("out_channels",),
        check=no_se,
        init=init_class_token,
        prefix_tokens=1,
    )
)
POSITION = register_block_kind(
    BlockKind(
        "position_embedding",
        build=PositionEmbedding,
        draw=draw_position,
        title="a learned position embedding, added",
        reads=("out_channels",),
        extra={**TOKENS, "grid": ("int", 14), "prefix": ("int", 0)},
        check=_position_checks,
        init=init_position,
    )
)
TRANSFORMER = register_block_kind(
    BlockKind(
        "transformer",
        build=TransformerBlock,
        draw=draw_transformer,
        title="pre-norm self-attention + MLP (ViT's block; Visformer's in map form)",
        reads=("out_channels", "kernel_size", "expand_ratio", "activation"),
        extra={
            **TOKENS,
            "heads": ("int", 6),
            "head_dim_ratio": ("float", 1.0),
            "attention": ("bool", True),
            "norm": ("str", "layer"),
            "bias": ("bool", False),
            "spatial": ("bool", False),
            "groups": ("int", 1),
        },
        check=_transformer_checks,
        parts={"norm1": "attention", "attn": "attention", "norm2": "MLP", "mlp": "MLP"},
        init=init_by_form,
    )
)
