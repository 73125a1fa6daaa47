"""The starting point, ResNet-50 exactly as timm's ``resnet50`` (and torchvision's).

**What it is.** A 7x7 stride-2 conv (64 channels) and a 3x3 stride-2 max pooling, then four
stages of 3, 4, 6 and 3 bottleneck blocks: 1x1 reduce -> 3x3 -> 1x1 expand, BatchNorm after
each conv, ReLU after the first two and after the sum with the shortcut. Stage widths are 256,
512, 1024 and 2048, the bottleneck inside a quarter of that; the first block of stages 2-4
downsamples with a stride-2 3x3 conv ("ResNet v1.5") and a 1x1 stride-2 projection on the
shortcut. The head is global average pooling and a linear layer. 25,557,032 parameters at 1000
classes; the tests prove this network equals timm's, layer for layer and output for output.

**What the paper measured.** 76.1% top-1 with the original 90-epoch recipe, and 78.8% (4.1
GFLOPs) with the modern one the whole roadmap is trained with (§2.1: 300 epochs, AdamW,
Mixup, CutMix, RandAugment, Random Erasing, stochastic depth, label smoothing): a third of
the gap to Swin-T came from training alone. This tool's ``convnext`` recipe is that recipe
(``--recipe convnext``), less stochastic depth, which these blocks do not have yet.

**Our choices where the paper is silent.** Every layer starts as timm's ``resnet50`` starts:
convolutions Kaiming-normal (fan out), each block's last BatchNorm at zero (the block starts as
its shortcut), the linear layer with PyTorch's defaults.
"""

from roadmap.arch.registry import register_step
from roadmap.arch.spec import BlockSpec, HeadSpec, NetSpec, StageSpec

WIDTHS = (256, 512, 1024, 2048)
DEPTHS = (3, 4, 6, 3)


def bottleneck(out: int, stride: int = 1) -> BlockSpec:
    """ResNet's bottleneck block, ``out`` wide, a quarter of that inside."""
    return BlockSpec(
        kind="bottleneck", out_channels=out, kernel_size=3, stride=stride, expand_ratio=0.25
    )


@register_step(
    "resnet50",
    title="ResNet-50 (timm resnet50), the modern training recipe",
    section="§2.1",
    base=True,
    roadmap="convnext",
    paper_top1=78.82,
    paper_cost=4.09,
    paper_note="with the paper's modern recipe; the original 90-epoch recipe: 76.13%",
)
def resnet50() -> NetSpec:
    """ResNet-50: the stem, four stages of bottlenecks, average pooling and a linear layer."""
    stem = (
        BlockSpec(kind="resnet_stem", out_channels=64, kernel_size=7, stride=2),
        BlockSpec(kind="max_pool", out_channels=64, kernel_size=3, stride=2),
    )
    stages = tuple(
        StageSpec(blocks=(bottleneck(w, 1 if i == 0 else 2),) + (bottleneck(w),) * (d - 1))
        for i, (w, d) in enumerate(zip(WIDTHS, DEPTHS, strict=True))
    )
    head = HeadSpec(activation="none", norm=False, init="torch")
    return NetSpec(stem=stem, stages=stages, head=head)
