"""3x3 convolutions in the feed-forward network (the official code's ``net5``).

**The change.** Each block's MLP gets a 3x3 convolution (followed by GELU) between its two 1x1
convolutions, and its hidden width drops from 4x to 5/6 of the block's width (320 at 384),
which keeps the computation about where it was.

**Why.** The MLP treats every position alone; a 3x3 convolution lets it see the neighbours,
the inductive bias (locality) convolutions are credited with.

**What the paper measured.** Not read here (see the first step): the table leaves it empty.

**Our choices where the paper is silent.** The hidden width follows the official code
(``in_features * 5 // 6`` when the convolution has one group); the 3x3 convolution is dense
(one group) and has a bias, like the MLP's other layers until the last step.
"""

from roadmap.arch.edit import set_fields
from roadmap.arch.registry import register_step
from roadmap.arch.spec import NetSpec

RATIO = 5 / 6


@register_step(
    "conv_ffn",
    title="3x3 conv in the MLP (hidden 5/6)",
    section="transition, net5",
    roadmap="visformer",
)
def conv_ffn(spec: NetSpec) -> NetSpec:
    """A dense 3x3 conv inside every block's MLP, hidden width 5/6 of the block's."""
    return set_fields(
        spec, "transformer", spatial=True, groups=1, kernel_size=3, expand_ratio=RATIO
    )
