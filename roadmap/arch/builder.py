"""Spec -> nn.Module. The builder adds no behaviour of its own: every choice is in the spec.

Module names follow spec paths: ``model.stages[2].blocks[3]`` is built from
``spec.stages[2].blocks[3]``, and its token mixer is ``stages.2.blocks.3.token_mixer``.

Initialization. The paper is silent; each layer starts as the codebase it comes from starts it,
so step 0 starts from the same distributions as timm's ``mobilenetv3_large_100`` and step 10 as
timm's (and the official) ``repvit_m0_9``, which the tests check layer by layer:

- MobileNetV3 blocks (``inverted_residual``), and MobileNetV3's head (the 960 and 1280 1x1
  convs and its linear layer): timm's ``_init_weight_goog``: conv weights N(0, 2 / fan_out)
  with fan_out = k*k*out / groups (a depthwise conv divides by its groups), linear weights
  U(+-1/sqrt(out)), biases 0, BatchNorm 1 / 0.
- RepViT blocks (``repvit``, ``downsample``): PyTorch's default init, as timm's RepViT and the
  official code leave them, with the last BN of a residual MLP starting at 0; RepViT's BN-linear
  classifier: truncated normal, std 0.02.
- A plain ``conv`` layer takes the family of the stem it sits in: MobileNetV3's while the stem
  holds MobileNetV3 blocks, RepViT's once ``early_conv_stem`` has replaced it. A step that
  swaps a block kind therefore swaps its init with it, and nothing else moves.
"""

import math
from collections.abc import Iterable, Sequence

import torch
from timm.layers import SelectAdaptivePool2d
from timm.models import checkpoint_seq
from timm.models._features import feature_take_indices
from torch import nn
from torch.utils.checkpoint import checkpoint

from roadmap.arch.layers import (
    ConvNorm,
    NormLinear,
    RepDepthwise,
    channel_mixer,
    hidden_width,
    make_act,
    make_se,
)
from roadmap.arch.spec import BlockSpec, HeadSpec, NetSpec, StageSpec, replace, validate
from roadmap.errors import RoadmapError


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
    """Global pooling -> [1x1 conv + act] -> dropout -> [BN] -> linear.

    ``pre_pool`` (MobileNetV3's 1x1 conv to 960) lives here because the spec's head holds it,
    but it works on the feature map, so ``RoadmapNet.forward_features`` runs it, as timm's
    MobileNetV3 does; ``forward`` starts at the pooling.
    """

    def __init__(self, in_ch: int, spec: HeadSpec, num_classes: int):
        super().__init__()
        self.pre_pool = nn.Identity()
        if spec.pre_pool_channels:
            self.pre_pool = ConvNorm(in_ch, spec.pre_pool_channels, 1, act=spec.activation)
            in_ch = spec.pre_pool_channels
        self.in_features = in_ch  # what forward_features hands over
        self.global_pool = SelectAdaptivePool2d(pool_type=spec.pool, flatten=False)
        in_ch *= self.global_pool.feat_mult()  # catavgmax concatenates two poolings
        self.hidden = nn.Identity()
        self.act = nn.Identity()
        if spec.hidden_channels:
            self.hidden = nn.Conv2d(in_ch, spec.hidden_channels, 1, bias=True)
            self.act = make_act(spec.activation)
            in_ch = spec.hidden_channels
        self.hidden_size = in_ch  # what pre_logits returns
        self.flatten = nn.Flatten(1) if spec.pool else nn.Identity()
        self.drop = nn.Dropout(spec.dropout)
        self.classifier = make_classifier(in_ch, num_classes, spec.norm)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)  # (B, C, H, W) -> (B, C, 1, 1), or unchanged without pooling
        x = self.flatten(self.act(self.hidden(x)))  # (B, C', 1, 1) -> (B, C')
        x = self.drop(x)
        return x if pre_logits else self.classifier(x)


def make_classifier(in_features: int, num_classes: int, norm: bool) -> nn.Module:
    """The last layer: [BN ->] linear, or nothing for ``num_classes == 0`` (features out)."""
    if num_classes == 0:
        return nn.Identity()
    layer = NormLinear(in_features, num_classes) if norm else nn.Linear(in_features, num_classes)
    return init_head(layer, norm)


class Stage(nn.Module):
    """A stage: its downsampling layers, then its blocks."""

    def __init__(self, in_ch: int, spec: StageSpec, family: str):
        super().__init__()
        self.downsample, in_ch = build_sequence(in_ch, spec.downsample, family)
        self.blocks, self.out_channels = build_sequence(in_ch, spec.blocks, family)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


def build_sequence(
    in_ch: int, blocks: tuple[BlockSpec, ...], family: str
) -> tuple[nn.Sequential, int]:
    """Build blocks in order, threading the width, each initialized as its family does;
    returns the sequence and its output width."""
    modules = []
    for spec in blocks:
        modules.append(init_block(BLOCKS[spec.kind](in_ch, spec), block_family(spec, family)))
        in_ch = spec.out_channels
    return nn.Sequential(*modules), in_ch


class RoadmapNet(nn.Module):
    """A network built from a :class:`NetSpec`; ``model.spec`` is the spec it was built from.

    It is a complete timm model: ``forward_features`` (unpooled, ``num_features`` channels),
    ``forward_head(pre_logits=True)`` (``head_hidden_size`` features), ``feature_info`` (one
    entry per reduction level), ``forward_intermediates``, ``prune_intermediate_layers``,
    ``set_grad_checkpointing`` (per stage), ``get_classifier`` / ``reset_classifier``
    (``num_classes=0`` gives a backbone, ``global_pool=""`` the feature map).
    """

    def __init__(self, spec: NetSpec):
        super().__init__()
        validate(spec)
        self.spec = spec
        self.num_classes = spec.num_classes
        self.grad_checkpointing = False
        family = stem_family(spec)
        self.stem, width = build_sequence(spec.in_channels, spec.stem, family)
        stages = []
        for stage_spec in spec.stages:
            stages.append(Stage(width, stage_spec, family))
            width = stages[-1].out_channels
        self.stages = nn.Sequential(*stages)
        self.head = Head(width, spec.head, spec.num_classes)
        init_head(self.head.pre_pool, spec.head.norm)
        init_head(self.head.hidden, spec.head.norm)
        self.feature_info, self._taps = feature_levels(spec)
        self.num_features = self.head.in_features
        self.head_hidden_size = self.head.hidden_size

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, num_features, H/32, W/32): everything before the pooling."""
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.stages, x)
        else:
            x = self.stages(x)
        return self.head.pre_pool(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pooling and classifier on the features; ``pre_logits`` stops before the classifier."""
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @staticmethod
    def levels_of(spec: NetSpec) -> list[dict]:
        """The ``feature_info`` a network built from ``spec`` will have."""
        return feature_levels(spec)[0]

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage in the backward pass instead of storing its activations."""
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        """Parameter groups for timm's layer-wise learning-rate decay."""
        blocks = (
            r"^stages\.(\d+)"
            if coarse
            else [
                (r"^stages\.(\d+)\.downsample", (0,)),
                (r"^stages\.(\d+)\.blocks\.(\d+)", None),
            ]
        )
        return {"stem": r"^stem", "blocks": blocks}

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        """The last layer (timm's API)."""
        return self.head.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh classifier for ``num_classes`` outputs (0: none); ``model.spec`` follows.

        Args:
            num_classes: the new number of classes; 0 makes the model a backbone that returns
                pooled features (``head_hidden_size`` of them).
            global_pool: a new pooling ("avg", "max", "avgmax", "catavgmax"), or "" for none
                (then the model returns the feature map); None keeps the current one.
        """
        head = self.spec.head
        if global_pool is not None and global_pool != head.pool:
            head = replace(head, pool=global_pool)
        self.spec = validate(replace(self.spec, num_classes=num_classes, head=head))
        self.num_classes = num_classes
        if head.pool != self.head.global_pool.pool_type:
            self._rebuild_pooling(head)
        self.head.classifier = make_classifier(self.head_hidden_size, num_classes, head.norm)

    def _rebuild_pooling(self, head: HeadSpec) -> None:
        pool = SelectAdaptivePool2d(pool_type=head.pool, flatten=False)
        if head.hidden_channels and pool.feat_mult() != self.head.global_pool.feat_mult():
            raise RoadmapError(
                f"global_pool {head.pool!r} changes the width the hidden 1x1 conv was built for"
            )
        self.head.global_pool = pool
        self.head.flatten = nn.Flatten(1) if head.pool else nn.Identity()
        if not head.hidden_channels:
            self.head_hidden_size = self.head.in_features * pool.feat_mult()
        self.head.hidden_size = self.head_hidden_size

    # --- intermediate features (timm's forward_intermediates contract) ---------------------

    def _units(self) -> list[nn.Module]:
        """What forward_features runs, in order: stem blocks, stages, the pre-pool conv."""
        return [*self.stem, *self.stages, self.head.pre_pool]

    @torch.jit.ignore
    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The features at ``feature_info``'s levels (all, the last n, or the ones listed).

        Args:
            x: input images.
            indices: None for every level, an int n for the last n, or a list of indices.
            norm: accepted for timm's API; these networks have no final norm layer.
            stop_early: stop after the last level asked for.
            output_fmt: only "NCHW".
            intermediates_only: return only the list of features.

        Returns:
            The features, or (the final features, the list) when ``intermediates_only`` is off.
        """
        if output_fmt != "NCHW":
            raise RoadmapError(f"output_fmt {output_fmt!r}: these networks give NCHW features")
        take, last = feature_take_indices(len(self.feature_info), indices)
        wanted = {self._taps[i] for i in take}
        units = self._units()
        stop = self._taps[last] + 1 if stop_early or intermediates_only else len(units)
        out = []
        for i, unit in enumerate(units[:stop]):
            x = checkpoint(unit, x) if self._checkpoint_unit(i) else unit(x)
            if i in wanted:
                out.append(x)
        return out if intermediates_only else (x, out)

    def _checkpoint_unit(self, i: int) -> bool:
        in_stages = len(self.stem) <= i < len(self.stem) + len(self.stages)
        return self.grad_checkpointing and in_stages and torch.is_grad_enabled()

    @torch.jit.ignore
    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop everything after the last level in ``indices`` (and the classifier); returns
        the absolute indices kept."""
        take, last = feature_take_indices(len(self.feature_info), indices)
        keep = self._taps[last] + 1
        n_stem, n_stages = len(self.stem), len(self.stages)
        self.stem = self.stem[: min(keep, n_stem)]
        self.stages = self.stages[: max(0, min(keep - n_stem, n_stages))]
        if keep <= n_stem + n_stages:
            self.head.pre_pool = nn.Identity()
        self.num_features = self.feature_info[last]["num_chs"]
        self.head.in_features = self.num_features
        if prune_head or keep <= n_stem + n_stages:
            self.head.hidden, self.head.act = nn.Identity(), nn.Identity()
            self.head_hidden_size = self.num_features
            self.head.hidden_size = self.num_features
            self.head.classifier = nn.Identity()
            self.head.global_pool = SelectAdaptivePool2d(pool_type="", flatten=False)
            self.head.flatten = nn.Identity()
            self.num_classes = 0
        return take


def feature_levels(spec: NetSpec) -> tuple[list[dict], list[int]]:
    """timm's ``feature_info`` for a spec, and the unit (stem block, stage, pre-pool conv)
    each level is taken after: the last unit at each reduction.

    A plain conv in the stem is not a level (timm's ``conv_stem`` is not one either); a block
    is, so MobileNetV3-L gets timm's five levels (16 ch at 1/2 ... 960 at 1/32) and RepViT its
    four (1/4 ... 1/32).
    """
    units: list[tuple[str, int, int, bool]] = []  # (module, channels, reduction, may tap)
    reduction = 1
    for i, block in enumerate(spec.stem):
        reduction *= block.stride
        units.append((f"stem.{i}", block.out_channels, reduction, block.kind != "conv"))
    for i, stage in enumerate(spec.stages):
        reduction *= 2 ** sum(b.stride == 2 for b in stage.downsample + stage.blocks)
        units.append((f"stages.{i}", spec.widths[i], reduction, True))
    if spec.head.pre_pool_channels:
        units.append(("head.pre_pool", spec.head.pre_pool_channels, reduction, True))
    info, taps = [], []
    for u, (module, channels, red, may_tap) in enumerate(units):
        later_same = any(r == red for _, _, r, _ in units[u + 1 :])
        if may_tap and not later_same:
            info.append({"num_chs": channels, "reduction": red, "module": module})
            taps.append(u)
    return info, taps


# --- initialization ---------------------------------------------------------------------------

MOBILENETV3, REPVIT = "mobilenetv3", "repvit"


def stem_family(spec: NetSpec) -> str:
    """Whose initialization a plain conv layer gets: MobileNetV3's when the stem holds
    MobileNetV3 blocks (its 3x3 stem conv), RepViT's otherwise (the early conv stem)."""
    return MOBILENETV3 if any(b.kind == "inverted_residual" for b in spec.stem) else REPVIT


def block_family(spec: BlockSpec, stem: str) -> str:
    """Which endpoint codebase a block comes from, and so how it starts."""
    if spec.kind == "inverted_residual":
        return MOBILENETV3
    if spec.kind in ("repvit", "downsample"):
        return REPVIT
    return stem


def init_block(module: nn.Module, family: str) -> nn.Module:
    """MobileNetV3 blocks start as timm's ``_init_weight_goog`` starts them; RepViT blocks keep
    PyTorch's default init, as timm's and the official RepViT do (their BatchNorm choices,
    including the zero-init last BN of a residual MLP, are made by the layers themselves)."""
    if family == MOBILENETV3:
        for m in module.modules():
            _init_goog(m)
    return module


def init_head(module: nn.Module, norm: bool) -> nn.Module:
    """MobileNetV3's head (pre-pool conv, hidden conv, linear) starts as timm's; RepViT's
    BN-linear classifier as the official code's (truncated normal, std 0.02)."""
    for m in module.modules():
        if norm and isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif not norm:
            _init_goog(m)
    return module


def _init_goog(m: nn.Module) -> None:
    """timm's ``_init_weight_goog`` (with ``fix_group_fanout``): conv N(0, 2 / fan_out) with
    fan_out = k*k*out / groups, linear U(+-1/sqrt(out)), BatchNorm 1 and 0."""
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
    from roadmap.arch.registry import build_spec

    return build(build_spec(upto, steps=steps, skip=skip, num_classes=num_classes))
