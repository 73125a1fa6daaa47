"""The starting point, MobileNetV3-Large exactly as timm's ``mobilenetv3_large_100``.

**What it is.** A 3x3 stride-2 conv stem (16 channels, hard-swish), a depthwise-separable
block, then fifteen inverted-residual blocks: 1x1 expand -> kxk depthwise -> optional
squeeze-and-excitation on the expanded width (hard-sigmoid gate) -> 1x1 project. Early blocks
use ReLU, later ones hard-swish; kernels are 3x3 with some 5x5; expansion ratios run from 2.3
to 6. The head is a 1x1 conv to 960, global pooling, a 1x1 conv to 1280 and a linear layer.
5,483,032 parameters at 1000 classes; the tests prove this network equals timm's, layer for
layer and output for output.

**How we cut it into the paper's parts.** RepViT's network has a stride-4 stem and four
stages (56, 28, 14 and 7 px at 224 input). MobileNetV3-L's resolution groups map onto them:
the stem is the first conv, the depthwise-separable block and the stride-2 block to 24
channels (the paper's Figure 4a shows exactly these as "the MobileNetV3-L stem"); stage 1 is
the 24-wide block at 56 px; stages 2-4 each start with the stride-2 block that downsamples
into them (our ``downsample`` slot) followed by their stride-1 blocks. Stage 3 holds both the
80- and the 112-wide blocks (both at 14 px). The final 1x1 conv to 960 belongs to the head:
the paper's "simple classifier" step removes it.

**What the paper measured.** Nothing for this exact network: the paper's baseline is already
the GELU variant (next step), trained with the DeiT-style recipe (71.5%, 1.01 ms on iPhone 12).
"""

from roadmap.arch.registry import register_step
from roadmap.arch.spec import MOBILENETV3_SE, BlockSpec, HeadSpec, NetSpec, StageSpec


def _ir(out: int, k: int, e: float, act: str, se: bool = False, stride: int = 1) -> BlockSpec:
    return BlockSpec(
        kind="inverted_residual",
        out_channels=out,
        kernel_size=k,
        stride=stride,
        expand_ratio=e,
        use_se=se,
        se=MOBILENETV3_SE,
        activation=act,
    )


@register_step(
    "mobilenetv3_large",
    title="MobileNetV3-Large (timm mobilenetv3_large_100)",
    section="§3.1",
    roadmap="repvit",
    base=True,
    paper_note="the paper reports no number for the ReLU/hard-swish network",
)
def mobilenetv3_large() -> NetSpec:
    """MobileNetV3-L: timm's ``arch_def`` for ``mobilenetv3_large_100``, block by block."""
    relu, hs = "relu", "hard_swish"
    stem = (
        BlockSpec(kind="conv", out_channels=16, kernel_size=3, stride=2, activation=hs),
        _ir(16, 3, 1.0, relu),  # depthwise-separable: no expansion conv
        _ir(24, 3, 4.0, relu, stride=2),
    )
    stages = (
        StageSpec(blocks=(_ir(24, 3, 3.0, relu),)),
        StageSpec(
            downsample=(_ir(40, 5, 3.0, relu, se=True, stride=2),),
            blocks=(_ir(40, 5, 3.0, relu, se=True),) * 2,
        ),
        StageSpec(
            downsample=(_ir(80, 3, 6.0, hs, stride=2),),
            blocks=(_ir(80, 3, 2.5, hs),)
            + (_ir(80, 3, 2.3, hs),) * 2
            + (_ir(112, 3, 6.0, hs, se=True),) * 2,
        ),
        StageSpec(
            downsample=(_ir(160, 5, 6.0, hs, se=True, stride=2),),
            blocks=(_ir(160, 5, 6.0, hs, se=True),) * 2,
        ),
    )
    head = HeadSpec(pre_pool_channels=960, hidden_channels=1280, activation=hs, norm=False)
    return NetSpec(stem=stem, stages=stages, head=head)
