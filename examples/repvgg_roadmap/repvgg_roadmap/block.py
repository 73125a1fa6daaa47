"""``repvgg``: a 3x3 conv with optional parallel 1x1 and identity branches (RepVGG's block).

Training form: ``ReLU(BN(conv3x3(x)) [+ BN(conv1x1(x))] [+ BN(x)])``, each branch with its own
BatchNorm, summed before the activation (the paper's Figure 2; timm's ``RepVggBlock``, whose
branches run in the order identity, 1x1, 3x3, as here). Deploy form: one 3x3 conv with a bias,
then ReLU, whatever the branches were: every branch is linear until the sum, so each folds
into a 3x3 kernel and the kernels add up.

This module declares the kind: its fields, its checks and its diagram, none of which needs
torch, so a spec naming it is read and checked at once. The module itself is built from
``layers.py`` (``lazy`` imports it when the first block is built).
"""

from roadmap import BlockKind, BlockSpec, Box, Par, Seq, lazy, register_block_kind


def draw(b: BlockSpec, in_ch: int, fused: bool) -> Seq:
    where = f", stride {b.stride}" if b.stride != 1 else ""

    def conv(k: int) -> Box:
        label = f"Conv {k}x{k} {in_ch}->{b.out_channels}{where}"
        return Box("conv", label, (in_ch, b.out_channels))

    act = Box("act", "ReLU" if b.activation == "relu" else b.activation)
    if fused:
        return Seq((conv(b.kernel_size), act))
    branches = [Seq((conv(b.kernel_size), Box("bn", "BN")))]
    if b.extra.get("branch_1x1"):
        branches.append(Seq((conv(1), Box("bn", "BN"))))
    if b.extra.get("identity"):
        branches.append(Seq((Box("identity", "identity"), Box("bn", "BN"))))
    return Seq((Par(tuple(branches)) if len(branches) > 1 else branches[0], act))


def check(b: BlockSpec) -> list[str]:
    problems = [] if b.kernel_size % 2 == 1 else [f"kernel_size must be odd, got {b.kernel_size}"]
    problems += [] if b.stride in (1, 2) else [f"stride must be 1 or 2, got {b.stride}"]
    return problems + (["a repvgg block has no SE slot"] if b.use_se else [])


REPVGG_BLOCK = register_block_kind(
    BlockKind(
        "repvgg",
        build=lazy("repvgg_roadmap.layers:RepVGGBlock"),
        draw=draw,
        title="RepVGG's block: kxk conv [+ 1x1 conv] [+ identity], each with BN, summed -> act",
        reads=("out_channels", "kernel_size", "stride", "activation"),
        extra={"branch_1x1": ("bool", False), "identity": ("bool", False)},
        check=check,
        init=lazy("repvgg_roadmap.layers:init"),
    )
)
