"""Visformer-S: what the paper built from the transition's lessons (timm ``visformer_small``).

**The change.** From the convolutional end of the transition, the paper keeps what helped and
puts back what was worth its cost:

- self-attention comes back in the last two stages (1/16 and 1/32: 196 and 49 positions,
  where it is cheap) and stays out of the first (784 positions), whose blocks are
  convolutional: a 3x3 convolution in 8 groups inside an MLP twice as wide as the block;
- the last two stages' MLPs are plain again (1x1, ratio 4, no 3x3 convolution);
- 7, 4 and 4 blocks per stage;
- the position embeddings come back, and each patch embedding gets a BatchNorm;
- BatchNorm everywhere, as from ``batch_norm`` on.

**Why.** The transition showed where the convolution-friendly parts helped and where
attention still paid; Visformer combines them at about DeiT-S's computation.

**What the paper measured.** Not read here (see the first step): the table leaves it empty.
The official repository's README gives Visformer-S as 82.2 % top-1, 4.9 GFLOPs and 40.2 M
parameters; that is not the paper's table, so it is quoted here and not in the table.

**Our choices where the paper is silent.** The qkv, projection and MLP layers lose their
biases here, as Visformer-S has none in the official code and in timm (the transition kept
DeiT-S's). Every conv starts as Visformer's ``conv_init`` starts it (Kaiming-normal, fan
out), the classifier truncated normal. The tests prove this network equals timm's
``visformer_small`` (40,219,592 parameters) layer for layer and output for output.
"""

from roadmap.arch.edit import require_stages
from roadmap.arch.registry import register_step
from roadmap.arch.spec import BlockSpec, NetSpec, StageSpec, replace

DEPTHS = (7, 4, 4)
GRIDS = (28, 14, 7)


def _block(template: BlockSpec, width: int, first: bool) -> BlockSpec:
    extra = dict(template.extra, bias=False, norm="batch")
    if first:  # the convolutional stage
        extra |= {"attention": False, "spatial": True, "groups": 8, "head_dim_ratio": 0.5}
        return replace(template, out_channels=width, expand_ratio=2.0, kernel_size=3, extra=extra)
    extra |= {"attention": True, "spatial": False, "groups": 1, "head_dim_ratio": 1.0}
    return replace(template, out_channels=width, expand_ratio=4.0, kernel_size=3, extra=extra)


@register_step(
    "visformer_s",
    title="Visformer-S (timm visformer_small)",
    section="Visformer",
    roadmap="visformer",
)
def visformer_s(spec: NetSpec) -> NetSpec:
    """Attention in stages 2-3, grouped 3x3 MLPs in stage 1, 7/4/4 blocks, positions back."""
    require_stages(spec, 3, "visformer_s", "depths")
    template = next(b for s in spec.stages for b in s.blocks)
    stages = []
    for i, (stage, depth, grid) in enumerate(zip(spec.stages, DEPTHS, GRIDS, strict=True)):
        patch = replace(stage.downsample[0], extra={**stage.downsample[0].extra, "norm": "batch"})
        width = patch.out_channels
        position = BlockSpec(kind="position_embedding", out_channels=width, extra={"grid": grid})
        blocks = (_block(template, width, first=i == 0),) * depth
        stages.append(StageSpec(downsample=(patch, position), blocks=blocks))
    return replace(spec, stages=tuple(stages))
