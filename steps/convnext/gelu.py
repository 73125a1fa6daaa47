"""ReLU becomes GELU.

**The change.** Every activation in the blocks is GELU.

**Why.** Transformers (BERT, GPT-2, ViT) use GELU, a smooth ReLU.

**What the paper measured.** 80.6% top-1, unchanged: the paper keeps GELU for what comes
next, not for what it gives here.

**Our choices where the paper is silent.** None: the stem and the head have no activation.
"""

from roadmap.arch.edit import map_blocks
from roadmap.arch.registry import register_step
from roadmap.arch.spec import BlockSpec, NetSpec, replace


@register_step(
    "gelu",
    title="ReLU -> GELU",
    section="§2.6",
    roadmap="convnext",
    paper_top1=80.62,
    paper_cost=4.15,
)
def gelu(spec: NetSpec) -> NetSpec:
    """Set every block's activation to GELU."""

    def edit(_path: str, b: BlockSpec) -> BlockSpec:
        return replace(b, activation="gelu") if b.activation != "none" else b

    return map_blocks(spec, edit)
