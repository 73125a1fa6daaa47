"""ConvNeXt's kinds: ``patchify`` (the stem), ``patch_merging`` (downsampling), ``convnext``.

- ``patchify``: a kxk conv with stride k (non-overlapping patches, ``stride = kernel_size``),
  then the norm (``norm``: ``batch`` or ``layer``). A plain layer: no feature level of its own.
- ``patch_merging``: the norm, then a kxk stride-k conv to the new width (ConvNeXt's separate
  downsampling layer: LayerNorm, then 2x2 stride 2).
- ``convnext``: kxk depthwise (the stride here) -> norm -> [activation] -> 1x1 expand ->
  [norm] -> activation -> 1x1 project -> [norm] -> x layer scale -> + shortcut ->
  [activation]. Its own fields say which of the bracketed layers it has, so one kind holds
  every block between ResNet's and ConvNeXt's:

  ``norm``: ``batch`` or ``layer`` (LayerNorm over the channels, eps 1e-6);
  ``norms``: ``all`` (after each conv, as in ResNet) or ``one`` (only after the depthwise conv);
  ``acts``: ``all`` (after the depthwise conv, between the 1x1s and after the sum) or ``one``
  (only between the 1x1s);
  ``layer_scale``: the initial value of a learned per-channel scale on the residual branch
  (``gamma``, 1e-6 in ConvNeXt), or 0 for none.

  With LayerNorm the block runs its 1x1 convs as linear layers on channels-last tensors, as
  timm and the official code do (the same function; it is how ConvNeXt-T's weights load). The
  shortcut is a 1x1 conv with the norm when the shape changes, the identity otherwise.

They start as ConvNeXt starts (timm's ``_init_weights``): every conv and linear weight
truncated normal with std 0.02, biases zero, norms ones and zeros.
"""

from __future__ import annotations

from roadmap.arch import anatomy
from roadmap.arch.anatomy import Box, Node, Par, Seq
from roadmap.arch.blocks import (
    NORMS,
    BlockKind,
    changes_shape,
    lazy,
    no_se,
    odd_kernel,
    register_block_kind,
    stride_1_or_2,
)
from roadmap.arch.spec import BlockSpec


def _norm_choice(b: BlockSpec, kind: BlockKind) -> list[str]:
    norm = kind.value(b, "norm")
    return [] if norm in NORMS else [f"norm must be one of {NORMS}, got {norm!r}"]


def _patch(b: BlockSpec) -> list[str]:
    ok = b.kernel_size >= 1 and b.stride == b.kernel_size
    return (
        [] if ok else [f"patches do not overlap: stride must equal kernel_size ({b.kernel_size})"]
    )


def _norm_label(norm: str) -> str:
    return "BN" if norm == "batch" else "LN"


# --- patchify ----------------------------------------------------------------------------------


def draw_patchify(b: BlockSpec, in_ch: int, fused: bool) -> Node:
    k, norm = b.kernel_size, PATCHIFY.value(b, "norm")
    conv = Box(
        "conv", f"Conv {k}x{k} {in_ch}->{b.out_channels}, stride {k}", (in_ch, b.out_channels)
    )
    keep = not (fused and norm == "batch")
    return Seq((conv, Box("bn", _norm_label(norm))) if keep else (conv,))


# --- patch merging -----------------------------------------------------------------------------


def draw_merging(b: BlockSpec, in_ch: int, fused: bool) -> Node:
    k, norm = b.kernel_size, MERGING.value(b, "norm")
    conv = Box(
        "conv", f"Conv {k}x{k} {in_ch}->{b.out_channels}, stride {k}", (in_ch, b.out_channels)
    )
    keep = not (fused and norm == "batch")
    return Seq((Box("bn", _norm_label(norm)), conv) if keep else (conv,))


# --- the ConvNeXt block ------------------------------------------------------------------------


def draw_convnext(b: BlockSpec, in_ch: int, fused: bool) -> Node:
    v = lambda name: CONVNEXT.value(b, name)  # noqa: E731
    out, k, act, norm = b.out_channels, b.kernel_size, b.activation, v("norm")
    mid = anatomy.hidden_width(out, b.expand_ratio)
    every_norm, every_act = v("norms") == "all", v("acts") == "all"
    folds = fused and norm == "batch"
    label = f"DW {k}x{k}, {in_ch}" + (f", stride {b.stride}" if b.stride != 1 else "")

    def normed(box: Box, has_norm: bool) -> tuple[Box, ...]:
        return (box, Box("bn", _norm_label(norm))) if has_norm and not folds else (box,)

    layers = normed(Box("dw", label, (in_ch, in_ch)), True)
    layers += anatomy.activation(act) if every_act else ()
    layers += normed(Box("conv", f"1x1 conv {in_ch}->{mid}", (in_ch, mid)), every_norm)
    layers += anatomy.activation(act)
    layers += normed(Box("conv", f"1x1 conv {mid}->{out}", (mid, out)), every_norm)
    if v("layer_scale"):
        layers += (Box("scale", f"x layer scale ({out})"),)
    if changes_shape(in_ch, b):
        short = normed(
            Box("conv", f"1x1 conv {in_ch}->{out}, stride {b.stride}", (in_ch, out)), True
        )
        summed: Node = Par((Seq(layers), Seq(short)))
    else:
        summed = anatomy.Res(Seq(layers))
    return Seq((summed, *(anatomy.activation(act) if every_act else ())))


def _convnext_checks(b: BlockSpec) -> list[str]:
    problems = _norm_choice(b, CONVNEXT) + no_se(b)
    for name, allowed in (("norms", ("all", "one")), ("acts", ("all", "one"))):
        if CONVNEXT.value(b, name) not in allowed:
            problems.append(f"{name} must be one of {allowed}, got {CONVNEXT.value(b, name)!r}")
    problems += odd_kernel(b) + stride_1_or_2(b)
    if CONVNEXT.value(b, "layer_scale") < 0:
        problems.append("layer_scale must be >= 0 (0: none)")
    return problems


NORM_FIELD = {"norm": ("str", "batch")}
PATCHIFY = register_block_kind(
    BlockKind(
        "patchify",
        build=lazy("roadmap_steps.convnext.blocks.layers:Patchify"),
        draw=draw_patchify,
        title="ConvNeXt's stem: kxk stride-k conv -> norm",
        reads=("out_channels", "kernel_size", "stride"),
        extra=NORM_FIELD,
        check=lambda b: _norm_choice(b, PATCHIFY) + _patch(b) + no_se(b),
        plain=True,
    )
)
MERGING = register_block_kind(
    BlockKind(
        "patch_merging",
        build=lazy("roadmap_steps.convnext.blocks.layers:build_merging"),
        draw=draw_merging,
        title="ConvNeXt's downsampling: norm -> kxk stride-k conv",
        reads=("out_channels", "kernel_size", "stride"),
        extra=NORM_FIELD,
        check=lambda b: _norm_choice(b, MERGING) + _patch(b) + no_se(b),
        parts={"norm": "downsampling", "conv": "downsampling"},
        init=lazy("roadmap_steps.convnext.blocks.layers:init_convnext"),
    )
)
CONVNEXT = register_block_kind(
    BlockKind(
        "convnext",
        build=lazy("roadmap_steps.convnext.blocks.layers:ConvNeXtBlock"),
        draw=draw_convnext,
        title="ConvNeXt's block: DW kxk -> norm -> 1x1 -> act -> 1x1 -> layer scale",
        reads=("out_channels", "kernel_size", "stride", "expand_ratio", "activation"),
        extra={
            **NORM_FIELD,
            "norms": ("str", "all"),
            "acts": ("str", "all"),
            "layer_scale": ("float", 0.0),
        },
        check=_convnext_checks,
        parts={
            "conv_dw": "token mixer",
            "norm": "token mixer",
            "mlp": "channel mixer",
            "shortcut": "downsampling",
        },
        init=lazy("roadmap_steps.convnext.blocks.layers:init_convnext"),
    )
)
