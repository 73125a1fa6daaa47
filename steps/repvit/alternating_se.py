"""Squeeze-and-excitation on every other block -> RepViT-M0.9.

**The change.** In each stage, SE is on the 1st, 3rd, 5th, ... block and off on the others;
the downsampling layers have none. The result is RepViT-M0.9 exactly (the tests prove it
equal to timm's ``repvit_m0_9`` with ``distillation=False``): 5,103,560 parameters in training
form, 5,067,056 once fused.

**Why.** SE gives a convolution a data-driven, attention-like ability to reweight its
channels by the content of the whole image, the property the paper wants from the ViT
perspective. But it costs latency, and the paper notes (citing TResNet) that stages with
low-resolution feature maps get a *smaller* accuracy benefit from SE than stages with
higher-resolution ones. MobileNetV3-L placed SE in certain blocks, mostly in its last two
(low-resolution) stages; the cross-block pattern instead reaches every stage, high-resolution
ones included, at about half the cost of SE in every block.
*Our remark, not the paper's:* SE's global pooling is also a synchronization point (the whole
feature map must be reduced before any channel can be rescaled), one more reason it costs
more on mobile hardware than its MACs suggest.

**What the paper measured.** 77.4% top-1 (+0.5), 0.87 ms (-0.02 ms), without distillation.
The paper's own ablation (Table 7): no SE 77.92% at 0.83 ms, SE in every block 78.75% at
0.92 ms, cross-block 78.74% at 0.87 ms. (Those top-1 values equal the distilled 300-epoch
results, so they appear to come from that recipe; the paper does not say.)

**Our choice where the paper is silent.** Blocks inside the stem (present only when
``early_conv_stem`` is skipped) keep whatever SE they had: they are not in a stage.
"""

from roadmap.arch.edit import alternate
from roadmap.arch.registry import register_step
from roadmap.arch.spec import NetSpec, StageSpec, replace


@register_step(
    "alternating_se",
    title="SE on alternate blocks (-> RepViT-M0.9)",
    section="§3.4",
    roadmap="repvit",
    paper_top1=77.4,
    paper_speed=0.87,
)
def alternating_se(spec: NetSpec) -> NetSpec:
    """SE on blocks 0, 2, 4, ... of every stage; none in downsampling layers."""

    def place(stage: StageSpec) -> StageSpec:
        return StageSpec(
            downsample=tuple(replace(b, use_se=False) for b in stage.downsample),
            blocks=alternate(stage.blocks, use_se=[True, False]),
        )

    return replace(spec, stages=tuple(place(s) for s in spec.stages))
