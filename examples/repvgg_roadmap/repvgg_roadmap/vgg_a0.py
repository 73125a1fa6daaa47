"""The starting point: a plain VGG-style stack with RepVGG-A0's shape, one 3x3 conv per layer.

**What it is.** 22 layers of 3x3 conv -> BatchNorm -> ReLU and nothing else: a stride-2 stem
layer to 48 channels, then four stages of 2, 4, 14 and 1 layers, 48, 96, 192 and 1280 wide,
the first layer of each at stride 2 (no pooling inside), then global average pooling and a
linear layer. This is the network RepVGG-A0 becomes after re-parameterization, trained as it
is: no branch, no shortcut.

**Why.** A plain stack of 3x3 convs is the fastest shape on most hardware (one kind of
operator, no branch to keep in memory until a sum, 3x3 kernels that Winograd speeds up), but
deep plain stacks train poorly: that is what the branches are for.

**What the paper measured.** 72.39% top-1 for RepVGG-B0 trained this way (Table 6: 120 epochs,
no branches), at 1,810 images/s on a GTX 1080Ti (batch 128, fp32). Our network is A0, not B0:
the paper ran the ablation on B0 only.

**Our choices where the paper is silent.** The layers start as timm's ``repvgg_a0`` starts its
blocks (convs normal with std sqrt(2 / fan_out), BatchNorm weights N(0.1, 0.1)), the
classifier normal with std 0.01, so that the roadmap's end starts as timm's.
"""

from roadmap import BlockSpec, HeadSpec, NetSpec, StageSpec, register_step

WIDTHS = (48, 96, 192, 1280)
DEPTHS = (2, 4, 14, 1)


def layer(width: int, stride: int = 1) -> BlockSpec:
    return BlockSpec(kind="repvgg", out_channels=width, kernel_size=3, stride=stride)


@register_step(
    "vgg_a0",
    title="Plain VGG-style stack, RepVGG-A0's widths and depths",
    section="Table 6",
    base=True,
    roadmap="repvgg",
    paper_top1=72.39,
    paper_note="RepVGG-B0 without either branch; 1,810 images/s before re-parameterization",
)
def vgg_a0() -> NetSpec:
    stages = tuple(
        StageSpec(blocks=(layer(w, 2),) + (layer(w),) * (d - 1))
        for w, d in zip(WIDTHS, DEPTHS, strict=True)
    )
    head = HeadSpec(activation="none", init="normal")
    return NetSpec(stem=(layer(48, 2),), stages=stages, head=head)
