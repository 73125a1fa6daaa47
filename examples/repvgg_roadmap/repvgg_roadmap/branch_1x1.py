"""Every layer gains a parallel 1x1 conv with its own BatchNorm, summed before the ReLU.

**The change.** ``ReLU(BN(conv3x3(x)) + BN(conv1x1(x)))`` in every layer, the stem and the
stride-2 layers included (the 1x1 branch runs at the same stride).

**Why.** A branch makes the training-time network an ensemble of paths, which trains better
than one plain path; and this one costs nothing at inference, because it folds away.

**How it folds.** A 1x1 conv is a 3x3 conv whose kernel is zero but for its centre. Fold
each BatchNorm into its conv (``W * gamma / sigma``, bias ``beta - mu * gamma / sigma``), pad
the 1x1 kernel with a ring of zeros, add the kernels and the biases: one 3x3 conv computes
the sum. One channel, one output position, worked through: the input patch
``[[1, 2, 0], [0, 1, 3], [2, 0, 1]]``, the 3x3 kernel ``[[0, 1, 0], [1, -1, 1], [0, 1, 0]]``
gives 2 + 0 - 1 + 3 + 0 = 4; a 1x1 kernel of 3 sees only the centre, 3 x 1 = 3; the sum is 7.
The padded sum of kernels, ``[[0, 1, 0], [1, 2, 1], [0, 1, 0]]``, gives 2 + 0 + 2 + 3 + 0 = 7.

**What the paper measured.** RepVGG-B0 with the 1x1 branch only: 73.15% top-1 (+0.76 points),
at 1,230 images/s before re-parameterization (Table 6, 120 epochs). After it, 1,810 again:
the deployed network is the plain one of the first step.

**Our choices where the paper is silent.** None.
"""

from roadmap import NetSpec, register_step, set_fields


@register_step(
    "branch_1x1",
    title="+ a 1x1 conv-BN branch beside every 3x3",
    section="Table 6",
    roadmap="repvgg",
    paper_top1=73.15,
    paper_note="RepVGG-B0 with the 1x1 branch only; 1,230 images/s before re-parameterization",
)
def branch_1x1(spec: NetSpec) -> NetSpec:
    return set_fields(spec, "repvgg", branch_1x1=True)
