"""A "patchify" stem: one 4x4 stride-4 convolution.

**The change.** ResNet's stem (7x7 stride-2 conv, then 3x3 stride-2 max pooling) becomes one
4x4 conv with stride 4 to 64 channels: non-overlapping 4x4 patches, as a vision
transformer's patch embedding (Swin's is 4x4 too).

**Why.** Both stems downsample by 4; the patchify one does it in one cheap layer that sees
every pixel once.

**What the paper measured.** 79.5% top-1 (from 79.4%), 4.4 GFLOPs (from 4.5).

**Our choices where the paper is silent.** The conv is followed by BatchNorm and no
activation: the network is still all BatchNorm here, and ConvNeXt's final stem is conv then
norm (LayerNorm, from the ``layer_norm`` step on). Without the stride-2 conv the network loses
its 1/2-resolution feature level: ``feature_info`` has four levels from here on.
"""

from roadmap.arch.registry import register_step
from roadmap.arch.spec import BlockSpec, NetSpec, replace

PATCH = 4


@register_step(
    "patchify_stem",
    title="Patchify stem: 4x4 conv, stride 4",
    section="§2.2",
    roadmap="convnext",
    paper_top1=79.51,
    paper_cost=4.42,
)
def patchify_stem(spec: NetSpec) -> NetSpec:
    """Replace the stem by a 4x4 stride-4 conv and its norm, as wide as the old stem."""
    width = spec.stem[-1].out_channels
    stem = BlockSpec(
        kind="patchify",
        out_channels=width,
        kernel_size=PATCH,
        stride=PATCH,
        activation="none",
        extra={"norm": "batch"},
    )
    return replace(spec, stem=(stem,))
