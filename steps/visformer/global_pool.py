"""The class token gives way to global average pooling (the official code's ``net1``).

**The change.** The class token is removed; the classifier reads the average of all tokens
after the final LayerNorm. Without a class token the 196 tokens are exactly the positions of
a 14 x 14 feature map, and from here on the network is written on maps, as the official code
writes all its networks: (batch, channels, height, width) tensors, each linear layer a 1x1
convolution (the same function and the same parameters), the position embedding a 384 x 14 x
14 map. The parameters lose only the class token (384) and its position (384).

**Why.** A convolutional network pools its last feature map; a class token is the
transformer's own way to summarise, and the first thing the transition takes out.

**What the paper measured.** Not read here (see the first step): the table leaves it empty.

**Our choices where the paper is silent.** The official ``net1`` also drops every bias of
the qkv, projection and MLP layers and uses a 0.25 power on q and k separately (the same
product as DeiT's scale). The paper describes net1 as DeiT-S with pooling, so we keep
DeiT-S's biases through the whole transition: they go only at Visformer-S (the last step),
whose code and timm model have none.
"""

from roadmap.arch.edit import set_fields
from roadmap.arch.registry import register_step
from roadmap.arch.spec import NetSpec, replace
from roadmap.errors import PreconditionError

FORMS = ("patch_embed", "position_embedding", "transformer")


def to_maps(spec: NetSpec) -> NetSpec:
    """The same network in map form: no token layout anywhere, no prefix tokens."""
    spec = set_fields(spec, FORMS, tokens=False)
    return set_fields(spec, "position_embedding", prefix=0)


@register_step(
    "global_pool",
    title="class token -> global average pooling",
    section="transition, net1",
    roadmap="visformer",
)
def global_pool(spec: NetSpec) -> NetSpec:
    """Remove the class token; pool the tokens by average."""
    if spec.head.pool != "token":
        raise PreconditionError("global_pool replaces a class-token head; this one pools already")
    spec = replace(spec, stem=tuple(b for b in spec.stem if b.kind != "class_token"))
    return replace(to_maps(spec), head=replace(spec.head, pool="avg"))
