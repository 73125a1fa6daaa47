"""LayerNorm becomes BatchNorm (the official code's ``net4``).

**The change.** Every LayerNorm, in the blocks and the final one, becomes a BatchNorm over the
channels, computed over the batch and the positions.

**Why.** The opposite of ConvNeXt's move: convolutional networks normalize by batch, and a
BatchNorm in front of a 1x1 convolution folds into it for deployment (the deploy form of this
step has no norm left; a LayerNorm cannot fold, its statistics belong to each position).

**What the paper measured.** Not read here (see the first step): the table leaves it empty.

**Our choices where the paper is silent.** The patch embeddings still have no norm (``net4``
has none); the final norm becomes a BatchNorm too, as in the official code.
"""

from roadmap.arch.edit import set_fields
from roadmap.arch.registry import register_step
from roadmap.arch.spec import NetSpec, replace


@register_step(
    "batch_norm",
    title="LN -> BN",
    section="transition, net4",
    roadmap="visformer",
)
def batch_norm(spec: NetSpec) -> NetSpec:
    """Switch the blocks' norms and the final norm to BatchNorm."""
    spec = set_fields(spec, "transformer", norm="batch")
    return replace(spec, head=replace(spec.head, pre_pool_norm="batch"))
