"""Step-wise patch embedding (the official code's ``net2``).

**The change.** The one 16x16 patch embedding becomes a stem and three smaller ones: a 7x7
stride-2 conv to 32 channels (BatchNorm, ReLU), then a 4x4 patch embedding to 192 channels
(1/8 of the input), a 2x2 one to 384 (1/16), where the twelve blocks run as before, and a last
2x2 one to 768 (1/32) before the final norm and the pooling. Each patch embedding gets its own
position embedding (28 x 28, 14 x 14 and 7 x 7 at 224 px).

**Why.** A 16x16 patch is a large, unlearned first step; convolutional networks reach 1/16 in
stages, and the paper asks whether embedding the patches step by step helps by itself.

**What the paper measured.** Not read here (see the first step): the table leaves it empty.

**Our choices where the paper is silent.** The layout is the official ``net2`` (its depth
``[0, 12, 0]``): the first and last stages have their patch embedding and position
embedding but no blocks yet, so the blocks still all run at 384 channels, 1/16. The stem conv
has no bias and starts as Visformer's convs do (Kaiming-normal, fan out); the new patch
embeddings have no norm yet (``net2`` has none).
"""

from roadmap.arch.registry import register_step
from roadmap.arch.spec import BlockSpec, NetSpec, StageSpec, replace
from roadmap.errors import PreconditionError

STEM_WIDTH = 32


def embedding(width: int, patch: int, grid: int) -> tuple[BlockSpec, ...]:
    """A patch embedding to ``width`` and its position embedding, in map form."""
    return (
        BlockSpec(kind="patch_embed", out_channels=width, kernel_size=patch, stride=patch),
        BlockSpec(kind="position_embedding", out_channels=width, extra={"grid": grid}),
    )


@register_step(
    "stepwise_embedding",
    title="step-wise patch embedding (7x7 stem, then 4x4, 2x2, 2x2)",
    section="transition, net2",
    roadmap="visformer",
)
def stepwise_embedding(spec: NetSpec) -> NetSpec:
    """Stem conv, then patch embeddings to 1/8, 1/16 (the blocks) and 1/32."""
    blocks = tuple(b for stage in spec.stages for b in stage.blocks)
    if len(spec.stages) != 1 or any(b.extra.get("tokens") for b in blocks):
        raise PreconditionError(
            "stepwise_embedding needs one stage of blocks on a feature map (after global_pool: "
            "a class token has no place in a feature map)"
        )
    width = blocks[0].out_channels
    stem = (
        BlockSpec(kind="conv", out_channels=STEM_WIDTH, kernel_size=7, stride=2, activation="relu"),
    )
    stages = (
        StageSpec(downsample=embedding(width // 2, 4, 28)),
        StageSpec(downsample=embedding(width, 2, 14), blocks=blocks),
        StageSpec(downsample=embedding(width * 2, 2, 7)),
    )
    return replace(spec, stem=stem, stages=stages)
