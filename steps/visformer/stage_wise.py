"""Stage-wise design (the official code's ``net3``).

**The change.** The twelve blocks are split over three stages, four each, at 192 channels and
1/8 of the input, 384 at 1/16 and 768 at 1/32, like a convolutional network's stages. The
first stage's heads are half as wide (six heads of 16 channels, where the others have six of
64 and 128): attention over 784 positions is the expensive part there.

**Why.** Convolutional networks work at several resolutions, fine detail early and semantics
late; a plain transformer keeps one. The paper asks whether the stages help a transformer too.

**What the paper measured.** Not read here (see the first step): the table leaves it empty.

**Our choices where the paper is silent.** Depths and head widths as the official ``net3``
(12 blocks split 4/4/4 and ``head_dim_ratio`` 0.5 in the first stage); the MLP keeps its
ratio of 4 in every stage.
"""

from roadmap.arch.edit import require_stages
from roadmap.arch.registry import register_step
from roadmap.arch.spec import NetSpec, StageSpec, replace

DEPTHS = (4, 4, 4)


@register_step(
    "stage_wise",
    title="stage-wise design: 4/4/4 blocks at 192/384/768",
    section="transition, net3",
    roadmap="visformer",
)
def stage_wise(spec: NetSpec) -> NetSpec:
    """Move the blocks into three stages of four, at each stage's width."""
    require_stages(spec, 3, "stage_wise", "depths")
    block = next(b for s in spec.stages for b in s.blocks)
    stages = []
    for i, (stage, depth) in enumerate(zip(spec.stages, DEPTHS, strict=True)):
        width = stage.downsample[0].out_channels
        extra = {**block.extra, "head_dim_ratio": 0.5} if i == 0 else dict(block.extra)
        blocks = (replace(block, out_channels=width, extra=extra),) * depth
        stages.append(StageSpec(downsample=stage.downsample, blocks=blocks))
    return replace(spec, stages=tuple(stages))
