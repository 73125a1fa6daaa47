"""Small pure helpers that steps use to edit a spec. Each returns a new spec.

A helper that cannot do what it is asked raises :class:`PreconditionError` (a spec of the wrong
shape for the step) with a message that names the problem, so a plugin author sees one line,
not a traceback from inside the helper.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from roadmap.arch.spec import BlockSpec, NetSpec, StageSpec, replace
from roadmap.errors import PreconditionError

BlockFn = Callable[[str, BlockSpec], BlockSpec]


def map_blocks(spec: NetSpec, fn: BlockFn) -> NetSpec:
    """Apply ``fn(path, block) -> block`` to every block (stem, downsample layers, blocks)."""
    stem = tuple(fn(f"stem.{i}", b) for i, b in enumerate(spec.stem))
    stages = tuple(
        StageSpec(
            downsample=tuple(
                fn(f"stages.{s}.downsample.{i}", b) for i, b in enumerate(st.downsample)
            ),
            blocks=tuple(fn(f"stages.{s}.blocks.{i}", b) for i, b in enumerate(st.blocks)),
        )
        for s, st in enumerate(spec.stages)
    )
    return replace(spec, stem=stem, stages=stages)


def map_stages(spec: NetSpec, fn: Callable[[int, StageSpec], StageSpec]) -> NetSpec:
    """Apply ``fn(index, stage) -> stage`` to every stage."""
    return replace(spec, stages=tuple(fn(i, st) for i, st in enumerate(spec.stages)))


def set_depths(spec: NetSpec, depths: Sequence[int]) -> NetSpec:
    """Give stage i exactly ``depths[i]`` blocks: repeat its last block, or drop from the end."""
    _check_len(spec, depths, "depths")

    def resize(i: int, stage: StageSpec) -> StageSpec:
        blocks = stage.blocks[: depths[i]]
        if not blocks:
            raise PreconditionError(f"set_depths: stages.{i} has no block to repeat")
        blocks += (blocks[-1],) * (depths[i] - len(blocks))
        return replace(stage, blocks=blocks)

    return map_stages(spec, resize)


def set_widths(spec: NetSpec, widths: Sequence[int]) -> NetSpec:
    """Set each stage's width; the stem ends at the first stage's width.

    Inside a stage's downsample layers, the layers before the first stride-2 one still work at
    the previous stage's width (RepViT's pre-block); the rest take the new width.
    """
    _check_len(spec, widths, "widths")
    stem = spec.stem[:-1] + (replace(spec.stem[-1], out_channels=widths[0]),)

    def rewidth(i: int, stage: StageSpec) -> StageSpec:
        down, width = [], widths[i - 1] if i > 0 else widths[0]
        for b in stage.downsample:
            width = widths[i] if b.stride == 2 else width
            down.append(replace(b, out_channels=width))
        blocks = tuple(replace(b, out_channels=widths[i]) for b in stage.blocks)
        return StageSpec(downsample=tuple(down), blocks=blocks)

    return map_stages(replace(spec, stem=stem), rewidth)


def alternate(blocks: Sequence[BlockSpec], **fields: Sequence) -> tuple[BlockSpec, ...]:
    """Cycle field values over blocks: ``alternate(bs, use_se=[True, False])`` -> T, F, T, ..."""
    empty = [name for name, values in fields.items() if not len(values)]
    if empty:
        raise PreconditionError(f"alternate: no values given for {', '.join(empty)}")
    return tuple(
        replace(b, **{k: v[i % len(v)] for k, v in fields.items()}) for i, b in enumerate(blocks)
    )


def replace_stem(spec: NetSpec, stem: Sequence[BlockSpec]) -> NetSpec:
    """A spec with a new stem."""
    return replace(spec, stem=tuple(stem))


def set_fields(spec: NetSpec, kinds: str | Sequence[str], **fields: object) -> NetSpec:
    """Set common fields (``kernel_size=7``) or a kind's own ones (``norm="layer"``) in every
    block of the given kinds; the others are left as they are."""
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    own = {k: v for k, v in fields.items() if k not in _COMMON}
    common = {k: v for k, v in fields.items() if k in _COMMON}

    def edit(_path: str, b: BlockSpec) -> BlockSpec:
        if b.kind not in kinds:
            return b
        return replace(b, **common, **({"extra": {**b.extra, **own}} if own else {}))

    return map_blocks(spec, edit)


_COMMON = {f for f in BlockSpec.__dataclass_fields__ if f not in ("kind", "extra")}


def has_kind(spec: NetSpec, kind: str) -> bool:
    """Whether any block of the spec is of ``kind``."""
    return any(b.kind == kind for _, b in spec.iter_blocks())


def require_stages(spec: NetSpec, count: int, step: str, what: str) -> None:
    """Raise PreconditionError unless ``spec`` has ``count`` stages (``step`` sets ``what``)."""
    if len(spec.stages) != count:
        raise PreconditionError(
            f"{step} sets {count} stage {what}; this network has {len(spec.stages)} stages"
        )


def _check_len(spec: NetSpec, values: Sequence[int], what: str) -> None:
    if len(values) != len(spec.stages):
        raise PreconditionError(f"{len(values)} {what} given for {len(spec.stages)} stages")
