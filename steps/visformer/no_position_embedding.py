"""No position embedding (the official code's ``net6``).

**The change.** The three learned position embeddings are removed.

**Why.** With 3x3 convolutions in every block (and zero padding at the borders), the network
can tell where it is without being told; the paper checks whether the embedding still helps.

**What the paper measured.** Not read here (see the first step): the table leaves it empty.

**Our choices where the paper is silent.** None: the blocks are unchanged.
"""

from roadmap.arch.edit import map_stages
from roadmap.arch.registry import register_step
from roadmap.arch.spec import NetSpec, StageSpec, replace


def _without(stage: StageSpec) -> StageSpec:
    return replace(
        stage, downsample=tuple(b for b in stage.downsample if b.kind != "position_embedding")
    )


@register_step(
    "no_position_embedding",
    title="no position embedding",
    section="transition, net6",
    roadmap="visformer",
)
def no_position_embedding(spec: NetSpec) -> NetSpec:
    """Remove every position embedding."""
    stem = tuple(b for b in spec.stem if b.kind != "position_embedding")
    return replace(map_stages(spec, lambda _i, s: _without(s)), stem=stem)
