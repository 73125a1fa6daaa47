"""Wider stages, 48 / 96 / 192 / 384 channels.

**The change.** The four stages' widths double from stage to stage: 48, 96, 192, 384 (from
MobileNetV3-L's 24, 40, 80-112, 160).

**Why.** The latency saved by expansion ratio 2 is reinvested in width, the usual trade in
lightweight ViTs, which keep narrow FFNs but wide token representations.

**What the paper measured.** 73.5% top-1, 0.89 ms. The paper's control experiment, the same
ratio and width changes on the *original* MobileNetV3 blocks (this step and ``expansion_2``
without ``separate_mixers``), reached only 73.0% at 0.91 ms, which is the evidence that the
separated block design is the better one. ``roadmap build --steps
mobilenetv3_large,gelu,expansion_2,widen`` builds that control network.

**Our choices where the paper is silent.**

- *Mapping onto MobileNetV3-L's width groups.* Widths go by resolution: 24 (56 px) -> 48,
  40 (28 px) -> 96, both the 80 and the 112 groups (14 px) -> 192, 160 (7 px) -> 384.
- *The stem* keeps its 16 channels; its last layer (the stride-2 block into stage 1) now ends
  at 48, the first stage's width.
- *The head* keeps its 960 / 1280 widths (the simple-classifier step removes them).
"""

from roadmap.arch.edit import require_stages, set_widths
from roadmap.arch.registry import register_step
from roadmap.arch.spec import NetSpec

WIDTHS = (48, 96, 192, 384)


@register_step(
    "widen",
    title="Stage widths 48/96/192/384",
    section="§3.2",
    roadmap="repvit",
    paper_top1=73.5,
    paper_speed=0.89,
)
def widen(spec: NetSpec) -> NetSpec:
    """Set the four stage widths to 48/96/192/384."""
    require_stages(spec, len(WIDTHS), "widen", "widths")
    return set_widths(spec, WIDTHS)
