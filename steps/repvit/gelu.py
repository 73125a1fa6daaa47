"""GELU replaces ReLU and hard-swish.

**The change.** Every activation in the stem, the blocks and the head becomes GELU.

**Why.** Not for accuracy: the authors measure latency with Core ML Tools on an iPhone 12 and
use GELU "to avoid unsupported functions with Core ML Tools". Together with the DeiT-style
training recipe (AdamW, 300 epochs, Mixup/CutMix, RandAugment, random erasing, label smoothing,
no distillation) this is the paper's aligned baseline.

**What the paper measured.** 71.5% top-1, 1.01 ms on iPhone 12: the baseline every later step
is compared with.

**Our choice where the paper is silent.** The squeeze-and-excitation layers keep their own
internals (a ReLU after the reduction, a hard-sigmoid gate): they are part of SE, not "the
block activations", and timm's ``act_layer="gelu"`` option leaves them alone too. Unlike that
option we also replace the ReLUs of the early blocks, so the network has one activation
function, as the final RepViT does.
"""

from roadmap.arch.edit import map_blocks
from roadmap.arch.registry import register_step
from roadmap.arch.spec import NetSpec, replace


@register_step(
    "gelu",
    title="GELU activations",
    section="§3.1",
    roadmap="repvit",
    paper_top1=71.5,
    paper_speed=1.01,
)
def gelu(spec: NetSpec) -> NetSpec:
    """Set every block and head activation (except "none") to GELU."""

    def to_gelu(_path: str, block):
        return block if block.activation == "none" else replace(block, activation="gelu")

    spec = map_blocks(spec, to_gelu)
    return replace(spec, head=replace(spec.head, activation="gelu"))
