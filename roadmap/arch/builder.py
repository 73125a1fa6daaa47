"""Spec -> nn.Module. The builder adds no behaviour of its own: every choice is in the spec.

Module names follow spec paths: ``model.stages[2].blocks[3]`` is built from
``spec.stages[2].blocks[3]``, and its token mixer is ``stages.2.blocks.3.token_mixer``.

Blocks are built by their kind (:mod:`roadmap.arch.blocks`); the builder threads the widths
from one block to the next and starts each block as its kind says.

Initialization. The paper is silent; each layer starts as the codebase it comes from starts it,
so step 0 starts from the same distributions as timm's ``mobilenetv3_large_100`` and step 10 as
timm's (and the official) ``repvit_m0_9``, which the tests check layer by layer:

- a block starts as its kind declares (MobileNetV3's blocks as timm's ``_init_weight_goog``;
  RepViT's blocks with PyTorch's defaults, their residual MLP's last BN at zero);
- a plain layer (``conv``) takes the init of the stem it sits in: MobileNetV3's while the stem
  holds MobileNetV3 blocks, PyTorch's once ``early_conv_stem`` has replaced it. A step that
  swaps a block kind therefore swaps its init with it, and nothing else moves;
- the head: MobileNetV3's (the 960 and 1280 1x1 convs, the linear layer) as
  ``_init_weight_goog``; RepViT's BN-linear classifier truncated normal, std 0.02.
"""

from collections.abc import Callable, Iterable, Sequence

import torch
from timm.models import checkpoint_seq
from timm.models._features import feature_take_indices
from torch import nn
from torch.utils.checkpoint import checkpoint

from roadmap.arch.blocks import check_outputs, get_block_kind
from roadmap.arch.footprint import FLOAT_BYTES, ROUGH_CHECK_BYTES, check_fits, rough_params
from roadmap.arch.layers import (
    ConvNorm,
    DistilledClassifier,
    NormLinear,
    bn_affine,
    channel_norm,
    global_pool,
    init_goog,
    layer_norm,
    make_act,
)
from roadmap.arch.roadmaps import Roadmap
from roadmap.arch.spec import (
    BlockSpec,
    HeadSpec,
    NetSpec,
    StageSpec,
    ends_in_tokens,
    prefix_tokens,
    replace,
    validate,
)
from roadmap.errors import RoadmapError

# How a block starts (None: PyTorch's defaults); see the module docstring.
Init = Callable[[nn.Module], None] | None


class Head(nn.Module):
    """Global pooling -> [LayerNorm] -> [1x1 conv + act] -> dropout -> [BN] -> linear.

    ``pre_pool`` (MobileNetV3's 1x1 conv to 960, or a transformer's final norm) lives here
    because the spec's head holds it, but it works on the features before the pooling, so
    ``RoadmapNet.forward_features`` runs it, as timm's MobileNetV3 and ViT do; ``forward``
    starts at the pooling.
    """

    def __init__(
        self, in_ch: int, spec: HeadSpec, num_classes: int, tokens: bool = False, prefix: int = 0
    ):
        super().__init__()
        self.pre_pool: nn.Module = nn.Identity()
        if spec.pre_pool_channels:
            self.pre_pool = ConvNorm(in_ch, spec.pre_pool_channels, 1, act=spec.activation)
            in_ch = spec.pre_pool_channels
        elif spec.pre_pool_norm == "layer":
            self.pre_pool = channel_norm(in_ch, tokens)
        elif spec.pre_pool_norm == "batch":
            self.pre_pool = nn.BatchNorm2d(in_ch)
        self.in_features = in_ch  # what forward_features hands over
        self.global_pool = global_pool(spec.pool, tokens, prefix)
        in_ch *= self.global_pool.feat_mult()  # catavgmax concatenates two poolings
        self.norm = layer_norm(in_ch) if spec.pool_norm == "layer" else nn.Identity()
        self.hidden = nn.Identity()
        self.act = nn.Identity()
        if spec.hidden_channels:
            self.hidden = nn.Conv2d(in_ch, spec.hidden_channels, 1, bias=True)
            self.act = make_act(spec.activation)
            in_ch = spec.hidden_channels
        self.hidden_size = in_ch  # what pre_logits returns
        self.flatten = nn.Flatten(1) if spec.pool else nn.Identity()
        self.drop = nn.Dropout(spec.dropout)
        self.classifier = make_classifier(in_ch, num_classes, spec)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.norm(self.global_pool(x))  # (B, C, H, W) -> (B, C, 1, 1), or unchanged
        x = self.flatten(self.act(self.hidden(x)))  # (B, C', 1, 1) -> (B, C')
        x = self.drop(x)
        return x if pre_logits else self.classifier(x)

    @torch.no_grad()
    def fuse(self) -> nn.Module:
        """Fold a BatchNorm before average pooling into the linear classifier after it (both
        are affine, and the average commutes with a per-channel affine map); the deploy form's
        ``forward_features`` then stops before that norm. Any other head is left as it is."""
        foldable = (
            isinstance(self.pre_pool, nn.BatchNorm2d)
            and self.global_pool.pool_type == "avg"
            and isinstance(self.norm, nn.Identity)
            and isinstance(self.hidden, nn.Identity)
            and type(self.classifier) is nn.Linear
        )
        if foldable:
            scale, shift = bn_affine(self.pre_pool)
            fc = self.classifier
            fc.bias.add_(fc.weight @ shift)
            fc.weight.mul_(scale[None, :])
            self.pre_pool = nn.Identity()
        return self


def make_classifier(in_features: int, num_classes: int, spec: HeadSpec) -> nn.Module:
    """The last layer: [BN ->] linear, or nothing for ``num_classes == 0`` (features out); two
    of them, averaged, with ``spec.distillation``."""
    if num_classes == 0:
        return nn.Identity()

    def one() -> nn.Module:
        kind = NormLinear if spec.norm else nn.Linear
        return init_head(kind(in_features, num_classes), spec)

    return DistilledClassifier(one(), one()) if spec.distillation else one()


class Stage(nn.Module):
    """A stage: its downsampling layers, then its blocks."""

    def __init__(self, in_ch: int, spec: StageSpec, stem_init: Init):
        super().__init__()
        self.downsample, in_ch = build_sequence(in_ch, spec.downsample, stem_init)
        self.blocks, self.out_channels = build_sequence(in_ch, spec.blocks, stem_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


def build_sequence(
    in_ch: int, blocks: tuple[BlockSpec, ...], stem_init: Init
) -> tuple[nn.Sequential, int]:
    """Build blocks in order by their kind, threading the width, each initialized as its kind
    says (a plain layer as its stem); returns the sequence and its output width."""
    modules = []
    for spec in blocks:
        kind = get_block_kind(spec.kind)
        module = kind.build(in_ch, spec)
        init = stem_init if kind.plain else kind.init
        if init is not None:
            init(module)
        modules.append(module)
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
        self.in_chans = spec.in_channels  # timm's name, read by its model tests
        self.grad_checkpointing = False
        init = stem_init(spec)
        self.stem, width = build_sequence(spec.in_channels, spec.stem, init)
        stages = []
        for stage_spec in spec.stages:
            stages.append(Stage(width, stage_spec, init))
            width = stages[-1].out_channels
        self.stages = nn.Sequential(*stages)
        self.num_prefix_tokens = prefix_tokens(spec)  # timm's ViT name
        self.tokens = ends_in_tokens(spec)  # features are (B, N, C) tokens, not a map
        self.head = Head(width, spec.head, spec.num_classes, self.tokens, self.num_prefix_tokens)
        init_head(self.head.pre_pool, spec.head)
        init_head(self.head.hidden, spec.head)
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

    @torch.jit.ignore
    def set_distilled_training(self, enable: bool = True) -> None:
        """With a distillation head: make a training-mode forward return both heads' logits
        (timm's API; evaluation always averages them)."""
        if isinstance(self.head.classifier, DistilledClassifier):
            self.head.classifier.distilled_training = enable

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh classifier for ``num_classes`` outputs (0: none); ``model.spec`` follows.

        Args:
            num_classes: the new number of classes; 0 makes the model a backbone that returns
                pooled features (``head_hidden_size`` of them).
            global_pool: a new pooling ("avg", "max", "avgmax", "catavgmax"), or "" for none
                (then the model returns the feature map); None keeps the current one, except
                that a classifier needs pooled features: a model without pooling that gets
                classes again pools by average (timm's default).
        """
        head = self.spec.head
        if global_pool is None and num_classes and not head.pool:
            global_pool = "avg"
        if global_pool is not None and global_pool != head.pool:
            head = replace(head, pool=global_pool)
        self.spec = validate(replace(self.spec, num_classes=num_classes, head=head))
        self.num_classes = num_classes
        if head.pool != self.head.global_pool.pool_type:
            self._rebuild_pooling(head)
        classifier = make_classifier(self.head_hidden_size, num_classes, head)
        like = next(self.parameters())  # the new head goes where, and as what, the model is
        self.head.classifier = classifier.to(device=like.device, dtype=like.dtype)
        self.head.train(self.training)  # new modules start in training mode; follow the model

    def _rebuild_pooling(self, head: HeadSpec) -> None:
        pool = global_pool(head.pool, self.tokens, self.num_prefix_tokens)
        if pool.feat_mult() != self.head.global_pool.feat_mult():
            after = "hidden 1x1 conv" if head.hidden_channels else "LayerNorm after the pooling"
            if head.hidden_channels or head.pool_norm:
                raise RoadmapError(
                    f"global_pool {head.pool!r} changes the width the {after} was built for"
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
            norm: apply the final norm (``HeadSpec.pre_pool_norm``) to the last level's
                features, as timm does; a network without one ignores it.
            stop_early: stop after the last level asked for.
            output_fmt: only "NCHW".
            intermediates_only: return only the list of features.

        Returns:
            The features, or (the final features, the list) when ``intermediates_only`` is off.
        """
        if output_fmt != "NCHW":
            raise RoadmapError(f"output_fmt {output_fmt!r}: these networks give NCHW features")
        take, last = feature_take_indices(len(self.feature_info), indices)
        reductions = {self._taps[i]: self.feature_info[i]["reduction"] for i in take}
        final = self._taps[-1]
        size = x.shape[-2:]
        units = self._units()
        stop = self._taps[last] + 1 if stop_early or intermediates_only else len(units)
        out = []
        for i, unit in enumerate(units[:stop]):
            x = checkpoint(unit, x) if self._checkpoint_unit(i) else unit(x)
            if i in reductions:
                y = self.head.pre_pool(x) if norm and i == final and self._final_norm() else x
                out.append(self._as_map(y, size, reductions[i]))
        return out if intermediates_only else (x, out)

    def _final_norm(self) -> bool:
        return self.spec.head.pre_pool_norm != "" and not isinstance(
            self.head.pre_pool, nn.Identity
        )

    def _as_map(self, x: torch.Tensor, size: torch.Size, reduction: int) -> torch.Tensor:
        """Features as a (B, C, H, W) map: tokens lose their prefix tokens (a class token) and
        are laid out on the grid they came from, as timm's ViT returns them."""
        if x.ndim == 4:
            return x
        h, w = size[0] // reduction, size[1] // reduction
        x = x[:, self.num_prefix_tokens :]
        return x.reshape(x.shape[0], h, w, -1).permute(0, 3, 1, 2).contiguous()

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
            self.head.norm = nn.Identity()
            self.head_hidden_size = self.num_features
            self.head.hidden_size = self.num_features
            self.head.classifier = nn.Identity()
            self.head.global_pool = global_pool("", self.tokens, self.num_prefix_tokens)
            self.head.flatten = nn.Identity()
            self.num_classes = 0
        return take


def feature_levels(spec: NetSpec) -> tuple[list[dict], list[int]]:
    """timm's ``feature_info`` for a spec, and the unit (stem block, stage, pre-pool conv)
    each level is taken after: the last unit at each reduction.

    A plain layer in the stem is not a level (timm's ``conv_stem`` is not one either); a block
    is, so MobileNetV3-L gets timm's five levels (16 ch at 1/2 ... 960 at 1/32) and RepViT its
    four (1/4 ... 1/32).
    """
    units: list[tuple[str, int, int, bool]] = []  # (module, channels, reduction, may tap)
    reduction = 1
    for i, block in enumerate(spec.stem):
        reduction *= block.stride
        plain = get_block_kind(block.kind).plain
        units.append((f"stem.{i}", block.out_channels, reduction, not plain))
    for i, stage in enumerate(spec.stages):
        for b in stage.downsample + stage.blocks:
            reduction *= b.stride
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


def stem_init(spec: NetSpec) -> Init:
    """How a plain layer starts: as the network's first block that is not a plain layer
    starts, looking in the stem, then in the stages (MobileNetV3's stem: its blocks' init;
    RepViT's early convolutions: RepViT's, PyTorch's defaults; a patchify stem: the init of
    the ResNet or ConvNeXt blocks after it)."""
    blocks = [b for _, b in spec.iter_blocks()]
    kinds = (get_block_kind(b.kind) for b in blocks)
    return next((k.init for k in kinds if not k.plain), None)


def init_head(module: nn.Module, spec: HeadSpec) -> nn.Module:
    """The head starts as its codebase starts it (``HeadSpec.init``): MobileNetV3's head
    (pre-pool conv, hidden conv, linear) as timm's; RepViT's BN-linear classifier and
    ConvNeXt's linear as the official code's (truncated normal, std 0.02); ResNet's linear
    with PyTorch's defaults; timm's ``byobnet`` networks (RepVGG) normal, std 0.01."""
    init = spec.init or ("trunc_normal" if spec.norm else "goog")
    for m in module.modules():
        if init in ("trunc_normal", "normal") and isinstance(m, nn.Linear):
            if init == "normal":
                nn.init.normal_(m.weight, std=0.01)
            else:
                nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif init == "goog":
            init_goog(m)
    return module


def build(spec: NetSpec) -> RoadmapNet:
    """Build the training-form network for ``spec`` (refused, before anything is allocated,
    when its weights would not fit in the memory this machine has free:
    :func:`roadmap.arch.footprint.check_fits`)."""
    if rough_params(spec) * FLOAT_BYTES > ROUGH_CHECK_BYTES:  # only then is it worth counting
        check_fits(spec, RoadmapNet)
    model = RoadmapNet(spec)
    check_outputs(model, spec)  # a plugin's kinds, held to their specs
    return model


def build_model(
    upto: str | None = None,
    *,
    steps: Sequence[str] | None = None,
    skip: Iterable[str] = (),
    num_classes: int = 1000,
    roadmap: Roadmap | str,
) -> RoadmapNet:
    """The training-form network after the resolved steps (arguments as in ``build_spec``)."""
    from roadmap.arch.registry import build_spec

    spec = build_spec(upto, steps=steps, skip=skip, num_classes=num_classes, roadmap=roadmap)
    return build(spec)
