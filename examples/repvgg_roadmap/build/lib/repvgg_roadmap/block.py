"""``repvgg``: a 3x3 conv with optional parallel 1x1 and identity branches (RepVGG's block).

Training form: ``ReLU(BN(conv3x3(x)) [+ BN(conv1x1(x))] [+ BN(x)])``, each branch with its own
BatchNorm, summed before the activation (the paper's Figure 2; timm's ``RepVggBlock``, whose
branches run in the order identity, 1x1, 3x3, as here). Deploy form: one 3x3 conv with a bias,
then ReLU, whatever the branches were: every branch is linear until the sum, so each folds
into a 3x3 kernel and the kernels add up.
"""

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from roadmap import (
    BlockKind,
    BlockSpec,
    Box,
    ConvNorm,
    Par,
    RoadmapError,
    Seq,
    fold_bn_into_conv,
    init_goog,
    make_act,
    register_block_kind,
)


class RepVGGBlock(nn.Module):
    def __init__(self, in_ch: int, spec: BlockSpec):
        super().__init__()
        out, k, stride = spec.out_channels, spec.kernel_size, spec.stride
        identity = spec.extra.get("identity", False)
        if identity and (in_ch != out or stride != 1):
            raise RoadmapError(f"an identity branch needs {in_ch} -> {out} and stride 1")
        self.identity = nn.BatchNorm2d(out) if identity else None
        self.conv_1x1 = ConvNorm(in_ch, out, 1, stride) if spec.extra.get("branch_1x1") else None
        self.conv_kxk = ConvNorm(in_ch, out, k, stride)
        self.act = make_act(spec.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.identity(x) if self.identity is not None else 0
        if self.conv_1x1 is not None:
            out = out + self.conv_1x1(x)
        return self.act(out + self.conv_kxk(x))

    @torch.no_grad()
    def fuse(self) -> nn.Module:
        """One kxk conv: the folded kxk kernel, plus the folded 1x1 kernel and the identity (a
        kxk kernel with a 1 at the centre of its own channel), both padded to kxk."""
        conv = self.conv_kxk.fuse()
        pad = [(conv.kernel_size[0] - 1) // 2] * 4
        if self.conv_1x1 is not None:
            one = self.conv_1x1.fuse()
            conv.weight += F.pad(one.weight, pad)
            conv.bias += one.bias
        if self.identity is not None:
            width = conv.out_channels
            eye = nn.Conv2d(width, width, 1, bias=False)
            eye.weight.copy_(torch.eye(width)[:, :, None, None])
            eye = fold_bn_into_conv(eye, self.identity)
            conv.weight += F.pad(eye.weight, pad)
            conv.bias += eye.bias
        return nn.Sequential(OrderedDict(conv=conv, act=self.act))


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


def init(module: nn.Module) -> None:
    """As timm's ByobNet starts a RepVGG block: convs normal with std sqrt(2 / fan_out), then
    every BatchNorm weight N(0.1, 0.1) and bias N(0, 0.1) (``RepVggBlock.init_weights``)."""
    for m in module.modules():
        init_goog(m)
        if isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 0.1, 0.1)
            nn.init.normal_(m.bias, 0.0, 0.1)


def check(b: BlockSpec) -> list[str]:
    problems = [] if b.kernel_size % 2 == 1 else [f"kernel_size must be odd, got {b.kernel_size}"]
    problems += [] if b.stride in (1, 2) else [f"stride must be 1 or 2, got {b.stride}"]
    return problems + (["a repvgg block has no SE slot"] if b.use_se else [])


REPVGG_BLOCK = register_block_kind(
    BlockKind(
        "repvgg",
        build=RepVGGBlock,
        draw=draw,
        title="RepVGG's block: kxk conv [+ 1x1 conv] [+ identity], each with BN, summed -> act",
        reads=("out_channels", "kernel_size", "stride", "activation"),
        extra={"branch_1x1": ("bool", False), "identity": ("bool", False)},
        check=check,
        init=init,
    )
)
