"""Deeper downsampling layers between stages.

**The change.** MobileNetV3-L moves from one stage to the next with a single stride-2 block.
RepViT uses a separate, deeper downsampling layer: a RepViT block (without SE) at the old
width, then a stride-2 depthwise conv, a 1x1 conv to the new width, and a residual FFN
(1x1 expand -> GELU -> 1x1 project). The spec shows it as two entries in the stage's
``downsample`` slot: the ``repvit`` pre-block and the ``downsample`` unit.

**Why.** ViTs downsample with a separate patch-merging layer; giving downsampling its own,
deeper layer avoids losing information at the resolution change. The extra depth costs
latency, which the following steps earn back.

**What the paper measured.** 75.4% top-1 (+1.5), 0.96 ms (+0.10 ms).

**Our choices where the paper is silent.** The pre-block and the FFN take the expansion ratio
of the block they replace (2 after ``expansion_2``), and its kernel size (so 5x5 in two places
until ``kernel_3x3``). Neither part has SE: the official code never puts SE in downsampling
layers (the authors confirm this in their issue tracker), so the SE the old stride-2 blocks
had is dropped here. The stride-2 block inside MobileNetV3's stem is not a layer between
stages and is left alone.
"""

from roadmap.arch.registry import register_step
from roadmap.arch.spec import REPVIT_SE, BlockSpec, NetSpec, StageSpec, replace
from roadmap.errors import PreconditionError


@register_step(
    "deeper_downsampling",
    title="Deeper downsampling layers",
    section="§3.3",
    roadmap="repvit",
    paper_top1=75.4,
    paper_speed=0.96,
)
def deeper_downsampling(spec: NetSpec) -> NetSpec:
    """Replace each stage's stride-2 RepViT block by pre-block + DW s2 + 1x1 + residual FFN."""
    stages = [spec.stages[0]]
    for i, stage in enumerate(spec.stages[1:], start=1):
        stages.append(_deepen(stage, spec.widths[i - 1], i))
    return replace(spec, stages=tuple(stages))


def _deepen(stage: StageSpec, in_width: int, index: int) -> StageSpec:
    if len(stage.downsample) != 1 or stage.downsample[0].kind != "repvit":
        found = [b.kind for b in stage.downsample]
        raise PreconditionError(
            f"deeper_downsampling replaces a single RepViT stride-2 block, but stage {index} "
            f"downsamples with {found}: apply separate_mixers before it"
        )
    old = stage.downsample[0]
    common = dict(
        kernel_size=old.kernel_size,
        expand_ratio=old.expand_ratio,
        activation=old.activation,
        use_se=False,
        se=REPVIT_SE,
    )
    pre_block = BlockSpec(kind="repvit", out_channels=in_width, stride=1, **common)
    unit = BlockSpec(kind="downsample", out_channels=old.out_channels, stride=2, **common)
    return replace(stage, downsample=(pre_block, unit))
