"""The starting point, DeiT-S exactly as timm's ``deit_small_patch16_224``.

**What it is.** A Vision Transformer (ViT-S/16 as DeiT trained it): the image is cut into
16x16 patches, each projected to a 384-wide token by one 16x16 stride-16 conv (196 tokens at
224 px); a learned class token is prepended and a learned position embedding (197 x 384) is
added; twelve identical blocks each run pre-norm multi-head self-attention (6 heads of 64)
and a pre-norm MLP (384 -> 1536 -> 384, GELU), each with a residual connection; a final
LayerNorm, and the classifier reads the class token alone. Every linear layer has a bias.
22,050,664 parameters at 1000 classes; the tests prove this network equals timm's, layer for
layer and output for output, class token and position embedding included.

**What the paper measured.** The paper's transition starts here and trains every network
twice: under a weak, ResNet-style recipe ("base") and DeiT's strong one ("elite"). Its
numbers for this row (top-1 in both settings, FLOPs, parameters) could not be read from the
paper on this machine, so the table leaves them empty rather than quote them from memory.

**Our choices where the paper is silent.** Every layer starts as timm's ViT starts it: linear
layers truncated normal (std 0.02) with zero biases, the patch conv with PyTorch's defaults,
the class token normal with std 1e-6, the position embedding truncated normal (std 0.02).
The position embedding belongs to the 14 x 14 grid of 224 px; trained at 64 px it is
resampled to the 4 x 4 grid it meets each time (timm's ``dynamic_img_size`` does the same), so
the network and its parameters stay the 224 px ones.
"""

from roadmap.arch.registry import register_step
from roadmap.arch.spec import BlockSpec, HeadSpec, NetSpec, StageSpec

WIDTH, DEPTH, HEADS, PATCH, GRID = 384, 12, 6, 16, 14


def transformer(width: int, **extra: object) -> BlockSpec:
    """DeiT's block at ``width``: 6 heads, MLP ratio 4, GELU, LayerNorm, biases (in the
    fields of ``extra`` where another step has changed them)."""
    fields = {"tokens": True, "heads": HEADS, "bias": True, **extra}
    return BlockSpec(
        kind="transformer", out_channels=width, expand_ratio=4.0, activation="gelu", extra=fields
    )


@register_step(
    "deit_s",
    title="DeiT-S (timm deit_small_patch16_224)",
    section="transition, start",
    base=True,
    roadmap="visformer",
)
def deit_s() -> NetSpec:
    """DeiT-S: patches, class token, position embedding, 12 blocks, class-token head."""
    stem = (
        BlockSpec(
            kind="patch_embed",
            out_channels=WIDTH,
            kernel_size=PATCH,
            stride=PATCH,
            extra={"tokens": True},
        ),
        BlockSpec(kind="class_token", out_channels=WIDTH),
        BlockSpec(
            kind="position_embedding",
            out_channels=WIDTH,
            extra={"tokens": True, "grid": GRID, "prefix": 1},
        ),
    )
    stages = (StageSpec(blocks=(transformer(WIDTH),) * DEPTH),)
    head = HeadSpec(activation="none", pool="token", pre_pool_norm="layer", init="trunc_normal")
    return NetSpec(stem=stem, stages=stages, head=head)
