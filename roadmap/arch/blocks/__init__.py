"""Block kinds: what a block of a spec can be, each declared once and found by name.

A spec's blocks say ``kind: repvit`` and the fields that kind reads; everything else the tool
knows about a kind is declared with it, in one :class:`BlockKind`:

- its **fields**: which common :class:`~roadmap.arch.spec.BlockSpec` fields it reads, the extra
  fields of its own (``BlockSpec.extra``, with their types and defaults) and the checks a block
  of it must pass (a kernel size, a stride, no SE slot, ...);
- how it **builds**: an ``nn.Module`` from the input width and the block's spec;
- how it **fuses**: the module's layers define ``fuse()`` (:mod:`roadmap.arch.reparam` walks
  them, as ``timm.utils.reparameterize_model`` does), so a kind built from
  :mod:`roadmap.arch.layers` fuses with nothing more to declare;
- how it **draws**: the diagram tree of :mod:`roadmap.arch.anatomy`, in training or deploy
  form, from the same widths the module is built with;
- which **profile kind** each of its named parts is (``token mixer``, ``SE``, ...), for
  :mod:`roadmap.measure.profile`;
- how it **initializes** (the codebase it comes from), and whether it is a plain layer: a
  plain layer is no feature level of its own and starts as the stem around it starts.

The four kinds of the RepViT roadmap are modules of this package (``conv``,
``inverted_residual``, ``repvit``, ``downsample``), loaded on the first lookup, as the step
registry loads the paper's steps. A plugin registers its own with :func:`register_block_kind`;
the builder, the spec checker, the diagrams, the profile and the counts find every kind here,
so a registered kind works everywhere.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from roadmap.errors import RoadmapError
from roadmap.util.names import did_you_mean
from roadmap.util.typed import checked

if TYPE_CHECKING:  # the registry needs neither at run time, so a spec can be checked by it
    from torch import nn

    from roadmap.arch.anatomy import Node
    from roadmap.arch.spec import BlockSpec

# Profile kinds a part may be (the rest of a network is stem, head, activation or other).
PART_KINDS = ("token mixer", "SE", "channel mixer", "downsampling")


@dataclass(frozen=True)
class BlockKind:
    """Everything about one kind of block (see the module docstring).

    Attributes:
        name: the ``kind`` a spec's block names.
        build: ``(in_channels, block) -> nn.Module``.
        draw: ``(block, in_channels, fused) -> diagram node``.
        title: one line for documentation (``roadmap blocks``).
        reads: the common BlockSpec fields the kind uses (the others are ignored by it).
        extra: its own fields: name -> (type annotation, default), e.g.
            ``{"groups": ("int", 1)}``; ``BlockSpec.extra`` holds the ones a block sets.
        check: ``block -> problems`` (one line each; none when the block is fine).
        parts: child module name -> profile kind (one of :data:`PART_KINDS`).
        init: ``module -> None`` re-initializing a freshly built block, or None to keep
            PyTorch's defaults.
        plain: a plain layer (no feature level of its own; initialized as its stem is).
    """

    name: str
    build: Callable[[int, BlockSpec], nn.Module]
    draw: Callable[[BlockSpec, int, bool], Node]
    title: str = ""
    reads: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, Any]] = field(default_factory=dict)
    check: Callable[[BlockSpec], Iterable[str]] = lambda block: ()
    parts: Mapping[str, str] = field(default_factory=dict)
    init: Callable[[nn.Module], None] | None = None
    plain: bool = False

    def value(self, block: BlockSpec, name: str) -> Any:
        """One of the kind's own fields: what the block sets, else the kind's default."""
        if name not in self.extra:
            raise KeyError(f"block kind {self.name!r} has no field {name!r}")
        return block.extra.get(name, self.extra[name][1])

    def load_extra(self, data: Any, where: str) -> dict[str, Any]:
        """The kind's own fields as read from a file, each type-checked (``where`` names them)."""
        if not isinstance(data, dict):
            raise RoadmapError(f"{where}: expected a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - set(self.extra))
        if unknown:
            known = ", ".join(self.extra) or "none"
            raise RoadmapError(
                f"{where}: {self.name} blocks have no field(s) {unknown}; their own fields: {known}"
            )
        return {k: checked(v, self.extra[k][0], f"{where}.{k}") for k, v in data.items()}

    def problems(self, block: BlockSpec) -> list[str]:
        """What is wrong with a block of this kind (empty when nothing is)."""
        try:
            self.load_extra(dict(block.extra), "extra")
        except RoadmapError as e:
            return [str(e)]
        return list(self.check(block))


# The modules of the built-in kinds: RepViT's four, then ResNet's and ConvNeXt's (three each).
BUILT_IN = ("conv", "inverted_residual", "repvit", "downsample", "resnet", "convnext")
_KINDS: dict[str, BlockKind] = {}


def _ensure_loaded() -> None:
    """Import the built-in kinds' modules (each registers its kinds), once."""
    for module in BUILT_IN:
        importlib.import_module(f"{__name__}.{module}")


def _built_in(kind: BlockKind) -> bool:
    return kind.build.__module__.startswith(f"{__name__}.")


def register_block_kind(kind: BlockKind) -> BlockKind:
    """Make a block kind known by its name (which must be new); returns it."""
    if kind.name in _KINDS:
        raise RoadmapError(f"block kind {kind.name!r} is already registered; pick a new name")
    if not kind.name.isidentifier():
        raise RoadmapError(f"block kind name {kind.name!r} must be a Python identifier")
    unknown = sorted(set(kind.parts.values()) - set(PART_KINDS))
    if unknown:
        raise RoadmapError(
            f"block kind {kind.name!r}: parts may be {', '.join(PART_KINDS)}, not {unknown}"
        )
    _KINDS[kind.name] = kind
    return kind


def get_block_kind(name: str) -> BlockKind:
    """The kind called ``name``; an unknown name raises and lists the known ones."""
    _ensure_loaded()
    if name not in _KINDS:
        known = block_kinds()
        raise RoadmapError(
            f"unknown block kind {name!r}{did_you_mean(name, known)}; known: {', '.join(known)}"
        )
    return _KINDS[name]


def block_kinds() -> list[str]:
    """Every registered kind's name: the built-in ones in their order, then the others as they
    were registered (whatever was imported first)."""
    _ensure_loaded()
    order = list(_KINDS)
    return sorted(order, key=lambda n: (not _built_in(_KINDS[n]), order.index(n)))


# --- what the built-in kinds share --------------------------------------------------------------

# The common BlockSpec fields (a kind that reads them all: the mobile blocks).
COMMON_FIELDS = (
    "out_channels", "kernel_size", "stride", "expand_ratio", "use_se", "se", "activation"
)  # fmt: skip


def odd_kernel(block: BlockSpec) -> list[str]:
    """A kernel that keeps the feature map's size at stride 1 ("same" padding)."""
    k = block.kernel_size
    return [] if k >= 1 and k % 2 == 1 else [f"kernel_size must be odd, got {k}"]


def stride_1_or_2(block: BlockSpec) -> list[str]:
    return [] if block.stride in (1, 2) else [f"stride must be 1 or 2, got {block.stride}"]


def no_se(block: BlockSpec) -> list[str]:
    return [f"a {block.kind} block has no SE slot"] if block.use_se else []


def expands(block: BlockSpec) -> list[str]:
    ratio = block.expand_ratio
    return [] if ratio >= 1.0 else [f"expand_ratio must be >= 1, got {ratio}"]


def mobile_block(block: BlockSpec) -> list[str]:
    """The checks of a MobileNet-style block: odd kernel, stride 1 or 2, an expansion >= 1."""
    return odd_kernel(block) + stride_1_or_2(block) + expands(block)
