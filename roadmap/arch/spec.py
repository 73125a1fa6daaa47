"""The architecture as data: frozen, JSON-only dataclasses that describe a network block by block.

A :class:`NetSpec` is everything the builder needs and nothing more. Steps edit specs; the
builder turns a spec into an ``nn.Module`` whose module names follow the spec's paths
(``stages.2.blocks.3`` is the block at ``spec.stages[2].blocks[3]``). Input channels are never
stored: each layer takes the output width of the layer before it, so a width change is one edit.

Layout of a network::

    stem     tuple of blocks (convs, or MobileNetV3's first blocks), overall stride 4
    stages   four StageSpecs, each = downsample (blocks run first, may be empty) + blocks
    head     pooling and classifier
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from roadmap.arch.blocks import get_block_kind
from roadmap.errors import RoadmapError
from roadmap.util import yamlio
from roadmap.util.typed import checked

ACTIVATIONS = ("relu", "hard_swish", "gelu", "none")
SE_GATES = ("sigmoid", "hard_sigmoid")
# Bounds that catch a typo before it asks the allocator for terabytes: the largest public
# classification label sets (ImageNet-21k: 21,841; iNaturalist; face identities) stay well below.
MAX_CLASSES = 1_000_000
MAX_CHANNELS = 16_384
# A block's hidden width (its input width x expand_ratio): ConvNeXt's 4x and the MobileNets'
# 6x of the widest stage stay far below; 4 x MAX_CHANNELS stops a ratio of 1e6.
MAX_HIDDEN = 4 * MAX_CHANNELS
# Bounds on what a spec may hold, checked before any work: the deepest networks these tools
# describe have 4 or 5 stages and about 50 blocks (ResNet-152 50, RepViT-M2.3 48 with its
# downsampling), so 16 stages and 1,024 blocks leave room for any real design and stop a
# generated file from making the builder (or the YAML parser) run for minutes.
MAX_STAGES = 16
MAX_BLOCKS = 1024
MAX_SPEC_BYTES = 1 << 20  # RepViT-M2.3's spec is ~40 KB of YAML


@dataclass(frozen=True)
class SESpec:
    """Squeeze-and-excitation: global pool -> 1x1 reduce -> ReLU -> 1x1 expand -> gate.

    Attributes:
        ratio: reduced width = make_divisible(width * ratio, 8, round_limit).
        gate: "hard_sigmoid" in MobileNetV3, "sigmoid" in RepViT.
        round_limit: make_divisible's guard. MobileNetV3 rounds up by 8 whenever rounding
            down would lose more than 10% (0.9); RepViT plainly rounds to the nearest 8 (0.0).
    """

    ratio: float = 0.25
    gate: str = "sigmoid"
    round_limit: float = 0.0


MOBILENETV3_SE = SESpec(ratio=0.25, gate="hard_sigmoid", round_limit=0.9)
REPVIT_SE = SESpec(ratio=0.25, gate="sigmoid", round_limit=0.0)


class Extra(dict):
    """A block kind's own fields (``BlockSpec.extra``): an immutable, hashable mapping of names
    to JSON values that serializes as a plain JSON object."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(json.dumps(self, sort_keys=True))

    def _immutable(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a spec is immutable: use replace(block, extra={...})")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _immutable  # type: ignore[assignment]
    __ior__ = _immutable  # type: ignore[assignment]

    def __reduce__(self) -> tuple:  # copy and pickle as a fresh mapping
        return (type(self), (dict(self),))


@dataclass(frozen=True)
class BlockSpec:
    """One block. ``kind`` names a registered block kind (:mod:`roadmap.arch.blocks`: ``conv``,
    ``inverted_residual``, ``repvit``, ``downsample``, and any a plugin adds), which says what
    the block is made of and which of these fields it reads.

    Attributes:
        kind: a registered block kind.
        out_channels: output width; the input width is the previous layer's output.
        kernel_size: depthwise (or conv) kernel size, odd.
        stride: 1 or 2.
        expand_ratio: hidden width = make_divisible(width * expand_ratio, 8).
        use_se: whether the block has squeeze-and-excitation.
        se: the form of SE used when ``use_se`` is set.
        activation: one of ACTIVATIONS.
        extra: the kind's own fields, where the block sets them (the kind declares their types
            and defaults); empty for the built-in kinds, and then left out of the JSON form.
    """

    kind: str
    out_channels: int
    kernel_size: int = 3
    stride: int = 1
    expand_ratio: float = 1.0
    use_se: bool = False
    se: SESpec = MOBILENETV3_SE
    activation: str = "relu"
    extra: Extra = Extra()

    def __post_init__(self) -> None:
        if not isinstance(self.extra, Extra):  # replace(block, extra={...}) takes a plain dict
            object.__setattr__(self, "extra", Extra(self.extra))


@dataclass(frozen=True)
class StageSpec:
    """A stage: ``downsample`` blocks (run first; empty for the first stage) then ``blocks``.

    The stage's depth is ``len(blocks)``; the paper's 1:1:7:1 ratio counts these only.
    """

    downsample: tuple[BlockSpec, ...] = ()
    blocks: tuple[BlockSpec, ...] = ()


@dataclass(frozen=True)
class HeadSpec:
    """Pooling and classifier.

    Order: [1x1 Conv-BN-act to ``pre_pool_channels``, or the norm ``pre_pool_norm``] ->
    global pooling -> [LayerNorm] ->
    [1x1 conv with bias to ``hidden_channels`` -> act] -> [BatchNorm1d] -> dropout -> linear.
    The pre-pool conv works on the feature map, so it belongs to the features
    (``forward_features``), as in timm's MobileNetV3; the rest is the head proper.

    Attributes:
        pre_pool_channels: MobileNetV3's 960-wide 1x1 conv before pooling, or None.
        hidden_channels: MobileNetV3's 1280-wide 1x1 conv after pooling, or None.
        activation: activation after those convs.
        norm: BatchNorm1d before the linear layer (RepViT's BN_Linear).
        dropout: dropout probability before the linear layer.
        pool: global pooling: "avg" (both papers), "max", "avgmax", "catavgmax" (twice the
            width), "token" (the class token a ViT prepends: its features' first token), or
            "" for none (then the head returns the feature map: a backbone).
        pre_pool_norm: a norm on the features before the pooling, as a transformer's final
            norm: "layer" (over the channels of each token or position, eps 1e-6), "batch",
            or "" for none. Like the pre-pool conv it belongs to ``forward_features``.
        pool_norm: "layer" for a LayerNorm on the pooled features (ConvNeXt's), or "".
        init: how the classifier starts: "goog" (MobileNetV3's), "trunc_normal" (std 0.02:
            RepViT's, ConvNeXt's), "normal" (std 0.01: timm's RepVGG, RegNet and the other
            ``byobnet`` networks), "torch" (PyTorch's defaults: ResNet's), or "" for the rule
            of 0.2 (trunc_normal with ``norm``, goog without).
        distillation: a second classifier beside the first, trained on a teacher's
            predictions (DeiT's distillation head, RepViT's official training); evaluation and
            the deploy form average the two, as timm's ``repvit_m0_9`` does.
    """

    pre_pool_channels: int | None = None
    hidden_channels: int | None = None
    activation: str = "hard_swish"
    norm: bool = False
    dropout: float = 0.0
    pool: str = "avg"
    pool_norm: str = ""
    init: str = ""
    distillation: bool = False
    pre_pool_norm: str = ""


POOLS = ("avg", "max", "avgmax", "catavgmax", "token", "")
PRE_POOL_NORMS = ("", "layer", "batch")
POOL_NORMS = ("", "layer")
HEAD_INITS = ("", "goog", "trunc_normal", "normal", "torch")
# Fields added after 0.1 stay out of the spec hash while they hold their default, so a record
# made before they existed still matches the network it was trained on.
_HASH_DEFAULTS = {
    ("head", "pool"): "avg",
    ("head", "pool_norm"): "",
    ("head", "init"): "",
    ("head", "distillation"): False,
    ("head", "pre_pool_norm"): "",
}


@dataclass(frozen=True)
class NetSpec:
    """A whole network: stem, four stages, head, and the number of classes."""

    stem: tuple[BlockSpec, ...]
    stages: tuple[StageSpec, ...]
    head: HeadSpec
    num_classes: int = 1000
    in_channels: int = 3

    # --- iteration -----------------------------------------------------------------------

    def iter_blocks(self) -> list[tuple[str, BlockSpec]]:
        """Every block with its spec path, in execution order."""
        out = [(f"stem.{i}", b) for i, b in enumerate(self.stem)]
        for s, stage in enumerate(self.stages):
            out += [(f"stages.{s}.downsample.{i}", b) for i, b in enumerate(stage.downsample)]
            out += [(f"stages.{s}.blocks.{i}", b) for i, b in enumerate(stage.blocks)]
        return out

    @property
    def depths(self) -> tuple[int, ...]:
        """Number of (non-downsampling) blocks per stage."""
        return tuple(len(s.blocks) for s in self.stages)

    @property
    def widths(self) -> tuple[int, ...]:
        """Output width of each stage."""
        return tuple(_stage_out(s) for s in self.stages)

    # --- serialization -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict (tuples become lists; a block's empty ``extra`` is left
        out, so specs without one read, hash and diff as they did before it existed)."""
        data = json.loads(json.dumps(dataclasses.asdict(self)))
        for blocks in _block_lists(data):
            for block in blocks:
                if not block.get("extra"):
                    block.pop("extra", None)
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetSpec:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise RoadmapError with the path."""
        return _load(cls, data, "spec")

    def save(self, path: str | Path) -> None:
        """Write the spec as JSON (``.json``) or YAML (``.yaml``/``.yml``), atomically."""
        from roadmap.util import files

        path = Path(path)
        _check_suffix(path)
        files.write_text(path, self.to_json() + "\n" if path.suffix == ".json" else self.to_yaml())

    @classmethod
    def load(cls, path: str | Path) -> NetSpec:
        """Read a spec from a .json or .yaml file; every field's type and range is checked."""
        path = Path(path)
        _check_suffix(path)
        try:
            size = path.stat().st_size
            if size > MAX_SPEC_BYTES:
                raise RoadmapError(
                    f"{path} is {size:,} bytes; a spec file is at most {MAX_SPEC_BYTES:,} "
                    "(the largest real network takes a few dozen KB): is it the right file?"
                )
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
            raise RoadmapError(f"cannot read spec file {path}: {reason}") from None
        try:
            data = yamlio.load(text)  # YAML is a superset of JSON
        except yaml.YAMLError as e:
            first = " ".join(str(e).split())
            raise RoadmapError(f"{path} is not valid YAML/JSON: {first}") from None
        try:
            return validate(cls.from_dict(data))
        except RoadmapError as e:
            raise RoadmapError(f"{path}: {e}") from None


SPEC_SUFFIXES = (".yaml", ".yml", ".json")


def _check_suffix(path: Path) -> None:
    if path.suffix.lower() not in SPEC_SUFFIXES:
        raise RoadmapError(
            f"{path}: a spec file ends in {', '.join(SPEC_SUFFIXES)} (the suffix picks the format)"
        )


def _block_lists(data: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The lists of blocks in a spec's plain data: the stem, each stage's two."""
    stages = data["stages"]
    return [data["stem"], *(s["downsample"] for s in stages), *(s["blocks"] for s in stages)]


def _stage_out(stage: StageSpec) -> int:
    blocks = stage.downsample + stage.blocks
    if not blocks:
        raise RoadmapError("a stage has neither downsample layers nor blocks")
    return blocks[-1].out_channels


def _load(cls: type, data: Any, path: str) -> Any:
    """Rebuild dataclass ``cls`` from plain data, naming the path of any bad key."""
    if not isinstance(data, dict):
        raise RoadmapError(f"{path}: expected a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise RoadmapError(f"{path}: unknown key(s) {unknown}; known: {sorted(known)}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _load_field(cls, name, value, f"{path}.{name}", data.get("kind"))
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise RoadmapError(f"{path}: {e}") from None


_NESTED = {
    (NetSpec, "stem"): BlockSpec,
    (NetSpec, "stages"): StageSpec,
    (NetSpec, "head"): HeadSpec,
    (StageSpec, "downsample"): BlockSpec,
    (StageSpec, "blocks"): BlockSpec,
    (BlockSpec, "se"): SESpec,
}


def _load_field(cls: type, name: str, value: Any, path: str, kind: Any = None) -> Any:
    """One field's value, type-checked (``use_se: "no"`` is an error, not a truthy string)."""
    if (cls, name) == (BlockSpec, "extra"):  # the kind declares its own fields
        return Extra(get_block_kind(checked(kind, "str", "kind")).load_extra(value, path))
    inner = _NESTED.get((cls, name))
    if inner is None:
        annotation = {f.name: f.type for f in fields(cls)}[name]
        return checked(value, annotation, path)
    if annotation_is_sequence(cls, name):
        if not isinstance(value, list):
            raise RoadmapError(f"{path}: expected a list, got {type(value).__name__}")
        return tuple(_load(inner, v, f"{path}.{i}") for i, v in enumerate(value))
    return _load(inner, value, path)


def annotation_is_sequence(cls: type, name: str) -> bool:
    """Whether a nested field holds a tuple of specs (``stem``, ``stages``, ``blocks``)."""
    return {f.name: f.type for f in fields(cls)}[name].startswith("tuple[")


# --- validation -------------------------------------------------------------------------


def validate(spec: NetSpec) -> NetSpec:
    """Check a spec for values the builder cannot build; errors name the spec path.

    Returns:
        The same spec, so calls can be chained.
    """
    if not 0 <= spec.num_classes <= MAX_CLASSES:
        raise RoadmapError(
            f"num_classes: must be between 0 (no classifier: features out) and "
            f"{MAX_CLASSES:,}, got {spec.num_classes:,}"
        )
    if spec.head.pool not in POOLS:
        raise RoadmapError(f"head.pool: {spec.head.pool!r} not in {POOLS}")
    if spec.head.pool_norm not in POOL_NORMS:
        raise RoadmapError(f"head.pool_norm: {spec.head.pool_norm!r} not in {POOL_NORMS}")
    if spec.head.pre_pool_norm not in PRE_POOL_NORMS:
        raise RoadmapError(
            f"head.pre_pool_norm: {spec.head.pre_pool_norm!r} not in {PRE_POOL_NORMS}"
        )
    if spec.head.pre_pool_norm and spec.head.pre_pool_channels:
        raise RoadmapError("head: a pre-pool conv or a pre-pool norm, not both")
    if spec.head.init not in HEAD_INITS:
        raise RoadmapError(f"head.init: {spec.head.init!r} not in {HEAD_INITS}")
    if spec.head.pool == "" and spec.num_classes:
        raise RoadmapError(
            "head.pool: without pooling the head returns the feature map; set num_classes to 0"
        )
    if not 1 <= spec.in_channels <= MAX_CHANNELS:
        raise RoadmapError(f"in_channels: must be between 1 and {MAX_CHANNELS}")
    if not 1 <= len(spec.stages) <= MAX_STAGES:
        raise RoadmapError(
            f"stages: a network has 1 to {MAX_STAGES} stages, this one {len(spec.stages):,}"
        )
    for i, stage in enumerate(spec.stages):
        if not stage.downsample and not stage.blocks:
            raise RoadmapError(f"stages.{i}: a stage has neither downsample layers nor blocks")
    blocks = len(spec.stem) + sum(len(s.downsample) + len(s.blocks) for s in spec.stages)
    if blocks > MAX_BLOCKS:
        raise RoadmapError(f"a network has at most {MAX_BLOCKS:,} blocks, this one {blocks:,}")
    width = spec.in_channels
    for path, block in spec.iter_blocks():
        _validate_block(block, path)
        hidden = max(width, block.out_channels) * block.expand_ratio
        if hidden > MAX_HIDDEN:
            raise RoadmapError(
                f"{path}: expand_ratio {block.expand_ratio:g} makes a hidden width of "
                f"{hidden:,.0f}; at most {MAX_HIDDEN:,}"
            )
        width = block.out_channels
    for name in ("pre_pool_channels", "hidden_channels"):
        width = getattr(spec.head, name)
        if width is not None and not 1 <= width <= MAX_CHANNELS:
            raise RoadmapError(f"head.{name}: must be between 1 and {MAX_CHANNELS}, or null")
    if spec.head.activation not in ACTIVATIONS:
        raise RoadmapError(f"head.activation: {spec.head.activation!r} not in {ACTIVATIONS}")
    if not 0.0 <= spec.head.dropout < 1.0:
        raise RoadmapError(f"head.dropout: must be in [0, 1), got {spec.head.dropout}")
    _validate_tokens(spec)
    return spec


def _validate_tokens(spec: NetSpec) -> None:
    """A head that fits the form of the features it is given (tokens or a map)."""
    if ends_in_tokens(spec) and spec.head.pool not in ("token", "avg", "max", ""):
        raise RoadmapError(f"head.pool: tokens pool by token, avg or max, not {spec.head.pool!r}")
    if ends_in_tokens(spec) and (
        spec.head.pool_norm or spec.head.pre_pool_channels or spec.head.hidden_channels
    ):
        raise RoadmapError(
            "head: tokens go to the classifier through pooling and head.pre_pool_norm only "
            "(no pool_norm, pre_pool_channels or hidden_channels)"
        )
    if spec.head.pre_pool_norm == "batch" and ends_in_tokens(spec):
        raise RoadmapError("head.pre_pool_norm: a BatchNorm needs a feature map, not tokens")
    if spec.head.pool == "token" and not prefix_tokens(spec):
        raise RoadmapError(
            "head.pool: 'token' reads a class token, and no block of this network adds one"
        )


def prefix_tokens(spec: NetSpec) -> int:
    """How many tokens the network's blocks prepend to the image's (a ViT's class token)."""
    return sum(get_block_kind(b.kind).prefix_tokens for _, b in spec.iter_blocks())


def ends_in_tokens(spec: NetSpec) -> bool:
    """Whether the network's features are tokens (B, N, C) rather than a map: a kind with a
    ``tokens`` field of its own says which form its output has; the last such block decides."""
    tokens = False
    for _, b in spec.iter_blocks():
        kind = get_block_kind(b.kind)
        if "tokens" in kind.extra:
            tokens = bool(kind.value(b, "tokens"))
    return tokens


def _validate_block(b: BlockSpec, path: str) -> None:
    """The checks every block passes, then its kind's own (:mod:`roadmap.arch.blocks`)."""
    checks = [
        (
            1 <= b.out_channels <= MAX_CHANNELS,
            f"out_channels must be between 1 and {MAX_CHANNELS}, got {b.out_channels}",
        ),
        (b.activation in ACTIVATIONS, f"activation {b.activation!r} not in {ACTIVATIONS}"),
        (b.se.gate in SE_GATES, f"se.gate {b.se.gate!r} not in {SE_GATES}"),
        (0.0 < b.se.ratio <= 1.0, f"se.ratio must be in (0, 1], got {b.se.ratio}"),
    ]
    try:
        problems = [m for ok, m in checks if not ok] + get_block_kind(b.kind).problems(b)
    except RoadmapError as e:  # an unknown kind
        problems = [str(e)]
    if problems:
        raise RoadmapError(f"{path}: {problems[0]}")


# --- identity ------------------------------------------------------------


def spec_hash(spec: NetSpec) -> str:
    """A short, stable digest of the spec's canonical JSON (12 hex digits)."""
    data = spec.to_dict()
    for (part, key), default in _HASH_DEFAULTS.items():
        if data[part].get(key) == default:
            del data[part][key]
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


__all__ = [
    "ACTIVATIONS",
    "MOBILENETV3_SE",
    "REPVIT_SE",
    "BlockSpec",
    "Extra",
    "HeadSpec",
    "NetSpec",
    "SESpec",
    "StageSpec",
    "replace",
    "spec_hash",
    "validate",
]
