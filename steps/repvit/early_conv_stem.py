"""Early convolutions as the stem.

**The change.** MobileNetV3-L's stem (a 3x3 stride-2 conv with 16 filters, a
depthwise-separable block and a stride-2 inverted-residual block) becomes two plain 3x3
stride-2 convs with 24 and 48 filters (Conv-BN-GELU, then Conv-BN).

**Why.** ViTs with a "patchify" stem are hard to optimize; a few stride-2 convolutions
("early convolutions", Xiao et al. 2021) fix that and are what lightweight ViTs now use. The
old stem also spends a lot of time at high resolution with few channels, which is slow on
mobile hardware for its small amount of work.

**What the paper measured.** 73.9% top-1 (+0.4), 0.86 ms (-0.03 ms).

**Our choices where the paper is silent.** The second conv ends at the first stage's width and
the first conv uses half of it (24 and 48 after ``widen``; 12 and 24 without it), as timm's
``RepVitStem`` does. The first conv keeps the activation the old stem used (GELU after the
``gelu`` step); the second has none, as in the official code.
"""

from roadmap.arch.edit import replace_stem
from roadmap.arch.registry import register_step
from roadmap.arch.spec import BlockSpec, NetSpec


@register_step(
    "early_conv_stem",
    title="Early-convolution stem (3x3 s2 x2)",
    section="§3.3",
    roadmap="repvit",
    paper_top1=73.9,
    paper_speed=0.86,
)
def early_conv_stem(spec: NetSpec) -> NetSpec:
    """Replace the stem with Conv3x3 s2 (w/2) -> act -> Conv3x3 s2 (w)."""
    width = spec.stem[-1].out_channels
    act = spec.stem[0].activation
    return replace_stem(
        spec,
        (
            BlockSpec(
                kind="conv", out_channels=width // 2, kernel_size=3, stride=2, activation=act
            ),
            BlockSpec(kind="conv", out_channels=width, kernel_size=3, stride=2, activation="none"),
        ),
    )
