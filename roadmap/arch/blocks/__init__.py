"""Block kinds: what a block of a spec can be, each declared once and found by name.

A spec's blocks say ``kind: repvit`` and the fields that kind reads; everything else the tool
knows about a kind is declared with it, in one :class:`BlockKind`:

- its **fields**: which common :class:`~roadmap.arch.spec.BlockSpec` fields it reads, the extra
  fields of its own (``BlockSpec.extra``, with their types and defaults) and the checks a block
  of it must pass (a kernel size, a stride, no SE slot, ...);
- how it **builds**: an ``nn.Module`` from the input width and the block's spec, usually
  named with :func:`lazy` (``"package.layers:Block"``), so that the module declaring the kind
  imports no torch: a spec is then read and checked, and its mistakes reported, in the time
  Python takes to start, and torch loads only when something is built;
- how it **fuses**: the module's layers define ``fuse()`` (:mod:`roadmap.arch.reparam` walks
  them, as ``timm.utils.reparameterize_model`` does), so a kind built from
  :mod:`roadmap.arch.layers` fuses with nothing more to declare;
- how it **draws**: the diagram tree of :mod:`roadmap.arch.anatomy`, in training or deploy
  form, from the same widths the module is built with;
- which **profile kind** each of its named parts is (``token mixer``, ``SE``, ...), for
  :mod:`roadmap.measure.profile`;
- how it **initializes** (the codebase it comes from), and whether it is a plain layer: a
  plain layer is no feature level of its own and starts as the stem around it starts.

The engine itself has one kind, ``conv`` (a Conv-BN-activation layer); every other kind comes
with the roadmap that uses it (RepViT's ``inverted_residual``, ``repvit`` and ``downsample``;
ConvNeXt's ``resnet_stem``, ``max_pool``, ``bottleneck``, ``patchify``, ``patch_merging`` and
``convnext``), declared by its package (a ``roadmap.block_kinds`` entry point, or
:func:`declare_block_kind` in a plugin) and imported on first use. A plugin may also register
a kind outright with :func:`register_block_kind`. The builder, the spec checker, the diagrams,
the profile and the counts find every kind here, so a registered kind works everywhere.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from roadmap.errors import RoadmapError
from roadmap.util.registry import Registry
from roadmap.util.typed import checked

if TYPE_CHECKING:  # torch is imported by a kind's module only when it builds
    from torch import nn

# A block's spec (roadmap.arch.spec.BlockSpec) and a diagram node (roadmap.arch.anatomy.Node).
# They are not imported, not even for type checking: the spec module asks this registry how
# to read and check a block, so this module must not lean on the spec module in turn.
BlockSpec = Any
Node = Any

# Profile kinds a part may be (the rest of a network is stem, head, activation or other).
PART_KINDS = ("token mixer", "SE", "channel mixer", "downsampling", "attention", "MLP")


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
        prefix_tokens: tokens a block of the kind prepends to the image's (a ViT's class
            token: 1); the head's ``token`` pooling reads the first, and intermediate
            features leave them out when they turn tokens into maps.
        first_conv: the name of the first conv inside a block of the kind (timm's config
            names a network's first conv: ``stem.0.conv``, ``stem.0.proj``).
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
    prefix_tokens: int = 0
    first_conv: str = "conv"

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


def lazy(target: str) -> Callable[..., Any]:
    """``"module:name"`` as a callable that imports ``module`` only when first called: a kind's
    ``build`` and ``init`` live with its ``nn.Module`` classes (which import torch), apart from
    the declaration, which the spec checker imports. The callable reports ``module`` as its
    own, so the kind's owner is where its layers are."""
    module, sep, name = target.partition(":")
    if not sep or not module or not name:
        raise RoadmapError(f"lazy({target!r}): expected 'module:name'")

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__module__, call.__name__, call.__qualname__ = module, name, name
    return call


ENTRY_POINTS = "roadmap.block_kinds"  # name = kind, value = the module that registers it


def _load_installed() -> None:
    """Declare the engine's own kind and every installed package's (imported on first use)."""
    from importlib.metadata import entry_points

    KINDS.declare("conv", f"{__name__}.conv")
    for ep in entry_points(group=ENTRY_POINTS):
        KINDS.declare(ep.name, ep.value)


KINDS: Registry[BlockKind] = Registry("block kind", loader=_load_installed)


def register_block_kind(kind: BlockKind) -> BlockKind:
    """Make a block kind known by its name (which must be new); returns it."""
    unknown = sorted(set(kind.parts.values()) - set(PART_KINDS))
    if unknown:
        raise RoadmapError(
            f"block kind {kind.name!r}: parts may be {', '.join(PART_KINDS)}, not {unknown}"
        )
    return KINDS.register(kind.name, kind, owner=kind.build.__module__)


def declare_block_kind(name: str, module: str) -> None:
    """Promise that importing ``module`` registers the kind ``name``: a roadmap package names
    its kinds this way, so listing them or reading a spec imports no torch until a block of
    the kind is built or checked."""
    KINDS.declare(name, module)


def get_block_kind(name: str) -> BlockKind:
    """The kind called ``name``; an unknown name raises and lists the known ones."""
    return KINDS.get(name)


def block_kinds() -> list[str]:
    """Every known kind's name: the engine's own, then the installed packages' and plugins'
    in the order they were declared or registered."""
    return KINDS.names()


# --- what the built-in kinds share --------------------------------------------------------------

# The common BlockSpec fields (a kind that reads them all: the mobile blocks).
COMMON_FIELDS = (
    "out_channels", "kernel_size", "stride", "expand_ratio", "use_se", "se", "activation"
)  # fmt: skip


# The norms a block may have: BatchNorm (folds into the conv next to it) or LayerNorm over the
# channels (ConvNeXt's and the ViTs', which nothing folds).
NORMS = ("batch", "layer")


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


def changes_shape(in_ch: int, block: BlockSpec) -> bool:
    """Whether a block's output differs from its input in shape (a stride or a new width), so
    that a residual block's shortcut needs a projection."""
    return block.stride != 1 or in_ch != block.out_channels


def mobile_block(block: BlockSpec) -> list[str]:
    """The checks of a MobileNet-style block: odd kernel, stride 1 or 2, an expansion >= 1."""
    return odd_kernel(block) + stride_1_or_2(block) + expands(block)


# The kinds whose modules are taken at their word: the engine's and the installed packages' own
# (whose tests hold them to their specs); a --plugin file's kinds are checked as they are built.
TRUSTED = ("roadmap.", "roadmap_steps.")


def check_outputs(model: nn.Module, spec: Any) -> None:
    """Run every block of a plugin's kind once, alone, on a small input: one whose module
    outputs another width than its spec says is named with its path and kind here, rather
    than failing later in the next block's convolution with a traceback about that one."""
    import torch

    width = spec.in_channels
    for path, block in spec.iter_blocks():
        owner = KINDS.owner(block.kind)
        if not owner.startswith(TRUSTED):
            module = model.get_submodule(path)
            mode = module.training
            with torch.no_grad():
                out = module.eval()(torch.zeros(1, width, 32, 32))
            module.train(mode)
            got = out.shape[1] if out.dim() > 1 else None
            if got != block.out_channels:
                raise RoadmapError(
                    f"{path}: a {block.kind} block says out_channels {block.out_channels} but "
                    f"its module (from {owner}) outputs {got}: the kind's build must follow "
                    "the block's spec"
                )
        width = block.out_channels
