"""Self-attention removed (the official code's ``net7``): the transition's convolutional end.

**The change.** Every block loses its attention half (its norm, qkv, attention and
projection): what is left is a norm and the convolutional MLP, with a residual connection. To
spend about the same computation the stages get 6, 7 and 7 blocks instead of 4, 4 and 4.

**Why.** The last step of the transition: a network with no transformer left, to see what
attention was worth once everything else is convolution-friendly.

**What the paper measured.** Not read here (see the first step): the table leaves it empty.

**Our choices where the paper is silent.** Depths as the official ``net7``. This is not
ResNet-50 (three stages, GELU, a pre-norm residual per block, no max pooling), and the
paper's own comparison with ResNet-50 is a separate row of its table.
"""

from roadmap.arch.edit import set_depths, set_fields
from roadmap.arch.registry import register_step
from roadmap.arch.spec import NetSpec

DEPTHS = (6, 7, 7)


@register_step(
    "no_attention",
    title="no self-attention (6/7/7 blocks)",
    section="transition, net7",
    roadmap="visformer",
)
def no_attention(spec: NetSpec) -> NetSpec:
    """Drop attention from every block; stages of 6, 7 and 7 blocks."""
    return set_depths(set_fields(spec, "transformer", attention=False), DEPTHS)
