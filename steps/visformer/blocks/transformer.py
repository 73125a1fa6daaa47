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

from roadmap.arch import anatomy
from roadmap.arch.anatomy import Box, Node, Res, Seq
from roadmap.arch.blocks import NORMS, BlockKind, lazy, no_se, odd_kernel, register_block_kind
from roadmap.arch.spec import BlockSpec


def _norm_label(norm: str) -> str:
    return {"batch": "BN", "layer": "LN"}.get(norm, "")


# --- patch embedding --------------------------------------------------------------------------


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


# --- position embedding -----------------------------------------------------------------------


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
        problems += odd_kernel(b)
        if v("groups") < 1 or hidden % v("groups"):
            problems.append(f"groups ({v('groups')}) must divide the MLP's width ({hidden})")
    return problems


TOKENS = {"tokens": ("bool", False)}
PATCH_EMBED = register_block_kind(
    BlockKind(
        "patch_embed",
        build=lazy("roadmap_steps.visformer.blocks.layers:PatchEmbed"),
        draw=draw_patch_embed,
        title="ViT's patch embedding: kxk stride-k conv, as tokens or a map, optional norm",
        reads=("out_channels", "kernel_size", "stride"),
        extra={**TOKENS, "norm": ("str", "")},
        check=_patch_checks,
        parts={"proj": "downsampling", "norm": "downsampling"},
        init=lazy("roadmap_steps.visformer.blocks.layers:init_by_form"),
        first_conv="proj",
    )
)
CLASS_TOKEN = register_block_kind(
    BlockKind(
        "class_token",
        build=lazy("roadmap_steps.visformer.blocks.layers:ClassToken"),
        draw=lambda b, in_ch, fused: Seq((Box("token", f"prepend class token ({in_ch})"),)),
        title="ViT's class token, prepended to the tokens",
        reads=("out_channels",),
        check=no_se,
        init=lazy("roadmap_steps.visformer.blocks.layers:init_class_token"),
        prefix_tokens=1,
    )
)
POSITION = register_block_kind(
    BlockKind(
        "position_embedding",
        build=lazy("roadmap_steps.visformer.blocks.layers:PositionEmbedding"),
        draw=draw_position,
        title="a learned position embedding, added",
        reads=("out_channels",),
        extra={**TOKENS, "grid": ("int", 14), "prefix": ("int", 0)},
        check=_position_checks,
        init=lazy("roadmap_steps.visformer.blocks.layers:init_position"),
    )
)
TRANSFORMER = register_block_kind(
    BlockKind(
        "transformer",
        build=lazy("roadmap_steps.visformer.blocks.layers:TransformerBlock"),
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
        init=lazy("roadmap_steps.visformer.blocks.layers:init_by_form"),
    )
)
