"""Counting: parameters and MACs.

MACs are counted by tracing with fvcore, which counts one fused multiply-add as one "flop"; we
call the unit what it is, MACs. We count what the RepViT paper and timm count: convolutions and
linear layers, and a transformer's attention products (q k^T and the weighted sum of v, which
fvcore does not know inside ``scaled_dot_product_attention``: counted here as it counts a
matmul). BatchNorm (folded away for deployment), pooling, activations, softmax, SE gating and
residual additions are excluded.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

# fvcore's default handles that are not multiply-adds of a conv or a linear layer.
MACS_UNIT = "MACs (fvcore, batch 1; conv, linear and attention multiply-adds)"
_NOT_COUNTED = ("aten::batch_norm", "aten::adaptive_avg_pool2d", "aten::upsample_nearest2d")


def _count_nothing(_inputs: list, _outputs: list) -> Counter:
    return Counter()


def _attention_macs(inputs: list, _outputs: list) -> Counter:
    """q (..., Nq, d) k^T (..., d, Nk), then (..., Nq, Nk) v (..., Nk, dv): the two products."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(inputs[i]) for i in range(3))
    batch = 1
    for n in q[:-2]:
        batch *= n
    (nq, d), nk, dv = q[-2:], k[-2], v[-1]
    return Counter({"attention": batch * nq * nk * (d + dv)})


def count_params(model: nn.Module) -> int:
    """Number of parameters (weights and biases, BN affine included; buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, img_size: int = 224, in_channels: int = 3) -> int:
    """Multiply-accumulates of one forward pass at batch 1, counted by fvcore on an eval copy.

    Args:
        model: the network (training or deploy form; it is not modified).
        img_size: square input resolution.
        in_channels: input channels.
    """
    with warnings.catch_warnings():  # fvcore scripts a loss function at import time
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        from fvcore.nn import FlopCountAnalysis

    was_training = model.training
    model.eval()
    try:
        # The input goes where the weights are: after training on a GPU the model is there.
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        x = torch.zeros(1, in_channels, img_size, img_size, device=device)
        analysis = FlopCountAnalysis(model, x)
        # A zero-counting handle, not None: fvcore keeps its own handle for an op set to None.
        analysis.set_op_handle(**{op: _count_nothing for op in _NOT_COUNTED})
        analysis.set_op_handle("aten::scaled_dot_product_attention", _attention_macs)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        logging.getLogger("fvcore").setLevel(logging.ERROR)
        with torch.no_grad():
            return int(analysis.total())
    finally:
        model.train(was_training)


@dataclass(frozen=True)
class Counts:
    """Parameters and MACs of a network's training form and of its fused deploy form.

    Attributes:
        params: parameters of the training form.
        macs: MACs of the training form (BN excluded; re-param branches included), or None
            when not counted (tracing costs about a second per network on 2 CPU cores).
        deploy_params: parameters once fused (``roadmap.fuse``).
        deploy_macs: MACs once fused: the number the paper reports.
        img_size: input resolution the MACs are counted at (batch 1).
    """

    params: int
    macs: int | None
    deploy_params: int
    deploy_macs: int
    img_size: int

    def to_dict(self) -> dict[str, int | None]:
        return dataclasses.asdict(self)


def count(
    model: nn.Module,
    img_size: int = 224,
    *,
    deploy: nn.Module | None = None,
    train_macs: bool = True,
) -> Counts:
    """Params and MACs of ``model`` and of its fused copy.

    Args:
        model: the training-form network (not modified).
        img_size: resolution for the MACs.
        deploy: its fused form, if already made (saves fusing twice).
        train_macs: also count the training form's MACs.
    """
    from roadmap.arch.reparam import fuse  # measure depends on reparam, never the reverse

    deploy = fuse(model) if deploy is None else deploy
    return Counts(
        params=count_params(model),
        macs=count_macs(model, img_size) if train_macs else None,
        deploy_params=count_params(deploy),
        deploy_macs=count_macs(deploy, img_size),
        img_size=img_size,
    )


# Counts already made in this process, by network and resolution: a spec is its network, so a
# notebook's or a walkthrough's second table, a second `build` of a step, or a test suite's
# hundredth count of RepViT-M0.9 builds and traces nothing. The kinds' identities are in the
# key, so a kind registered anew (a plugin reloaded) is counted anew.
_KEPT: dict[tuple, Counts] = {}


def count_network(
    spec: Any,
    img_size: int = 224,
    *,
    model: nn.Module | None = None,
    deploy: nn.Module | None = None,
    train_macs: bool = True,
) -> Counts:
    """:func:`count` of the network ``spec`` builds, kept for the process (see ``_KEPT``).

    Args:
        spec: the network's ``NetSpec``.
        img_size: resolution for the MACs.
        model: the network, if already built (it is built from ``spec`` otherwise, and only
            when the counts are not kept yet).
        deploy: its fused form, if already made.
        train_macs: also count the training form's MACs.
    """
    from roadmap.arch.blocks import get_block_kind
    from roadmap.arch.spec import spec_hash

    kinds = sorted({block.kind for _, block in spec.iter_blocks()})
    key = (spec_hash(spec), img_size, tuple((k, id(get_block_kind(k))) for k in kinds))
    kept = _KEPT.get(key)
    if kept is not None and (kept.macs is not None or not train_macs):
        return kept
    if model is None:
        from roadmap.arch.builder import build

        model, deploy = build(spec), None
    _KEPT[key] = count(model, img_size, deploy=deploy, train_macs=train_macs)
    return _KEPT[key]
