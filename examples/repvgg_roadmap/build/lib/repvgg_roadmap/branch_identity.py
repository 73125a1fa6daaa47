"""Every layer that keeps its shape gains an identity branch (a BatchNorm of its input).

**The change.** ``ReLU(BN(conv3x3(x)) + BN(conv1x1(x)) + BN(x))`` where the input and output
widths agree and the stride is 1, as the paper has it (17 of the 22 layers); the stem and the
first layer of each stage keep two branches. This is RepVGG-A0 as timm builds it
(``repvgg_a0``): the tests copy its weights into ours and get the same logits.

**Why.** The identity is ResNet's shortcut without the skip's cost at inference: an extra
path through every layer during training, folded away for deployment.

**How it folds.** The identity is a 1x1 conv whose kernel is 1 from each channel to itself
and 0 elsewhere; fold its BatchNorm in, pad it to 3x3 like the 1x1 branch, add. With the
previous step's one-channel example: the identity passes the centre, 1, so the three branches
give 4 + 3 + 1 = 8, and the summed kernel ``[[0, 1, 0], [1, 3, 1], [0, 1, 0]]`` gives
2 + 0 + 3 + 3 + 0 = 8. Three convolutions summed are one convolution with the summed kernels.

**What the paper measured.** RepVGG-B0 with both branches: 75.14% top-1 (Table 6, 120
epochs), 2.75 points over the plain stack and 0.35 over the identity branch alone (74.79%,
the ablation ``--skip branch_1x1`` builds); 1,061 images/s before re-parameterization, the
plain network's 1,810 after. RepVGG-A0 itself, trained the same 120 epochs (Table 4): 72.41%
top-1, 8.30 M parameters and 1.4 GFLOPs once deployed, 3,256 images/s. (The figures of this
package are transcribed from arXiv 2101.03697v3.)

**Our choices where the paper is silent.** None.
"""

from roadmap import BlockSpec, NetSpec, map_blocks, register_step, replace


@register_step(
    "branch_identity",
    title="+ an identity-BN branch where the shape allows (RepVGG-A0)",
    section="Table 6",
    roadmap="repvgg",
    paper_top1=75.14,
    paper_note="RepVGG-B0 with both branches; 1,061 images/s before re-parameterization",
)
def branch_identity(spec: NetSpec) -> NetSpec:
    width = spec.in_channels

    def edit(_path: str, b: BlockSpec) -> BlockSpec:
        nonlocal width
        fits, width = b.stride == 1 and b.out_channels == width, b.out_channels
        return replace(b, extra={**b.extra, "identity": True}) if fits else b

    return map_blocks(spec, edit)
