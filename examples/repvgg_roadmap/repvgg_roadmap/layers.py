"""The ``repvgg`` kind's module: what ``block.py`` declares, built (this is the part that
imports torch)."""

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from roadmap import BlockSpec, ConvNorm, RoadmapError, fold_bn_into_conv, init_goog, make_act


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


def init(module: nn.Module) -> None:
    """As timm's ByobNet starts a RepVGG block: convs normal with std sqrt(2 / fan_out), then
    every BatchNorm weight N(0.1, 0.1) and bias N(0, 0.1) (``RepVggBlock.init_weights``)."""
    for m in module.modules():
        init_goog(m)
        if isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 0.1, 0.1)
            nn.init.normal_(m.bias, 0.0, 0.1)
