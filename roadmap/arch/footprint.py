"""What a network needs in memory, known before it is built: its parameters and a batch's
activations, counted on the meta device (shapes only, no storage), against what the machine
(or the GPU) has free. A spec can ask for more than any machine holds (1,000 blocks 2,048
wide pass every range check); it is refused here with the numbers, not by the kernel's OOM
killer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from roadmap.arch.spec import NetSpec
from roadmap.errors import RoadmapError

# Below this many bytes of weights by the rough bound, a build skips the exact count: every
# network of the built-in roadmaps and their families but ConvNeXt-B and -L stays below it.
ROUGH_CHECK_BYTES = 1 << 30


def rough_params(spec: NetSpec) -> int:
    """An upper bound of the parameter count, from the spec alone in microseconds: each block
    as if it held a full kxk conv at its widest width, an expansion to its hidden width and
    back, and a depthwise kxk there (no block holds more)."""
    total, width = 0, spec.in_channels
    for _, block in spec.iter_blocks():
        wide = max(width, block.out_channels)
        hidden = int(wide * max(1.0, block.expand_ratio))
        k2 = block.kernel_size**2
        total += wide * wide * k2 + 2 * wide * hidden + hidden * k2 + 4 * hidden
        width = block.out_channels
    head = spec.head.hidden_channels or width
    return total + head * (width + spec.num_classes + 1)


# What a training step holds beside the weights: their gradients and two AdamW moments.
TRAINING_COPIES = 4
FLOAT_BYTES = 4


@dataclass(frozen=True)
class Footprint:
    """What a network needs in memory, found on the meta device (shapes only, no storage).

    Attributes:
        params: its parameters.
        activations: the elements its layers output for one image at the resolution asked
            for (what a training step keeps for the backward pass), or None when not asked.
    """

    params: int
    activations: int | None = None

    def bytes(self, batch: int = 1, training: bool = False) -> int:
        """float32 bytes: the weights (with gradients and optimizer moments when training),
        and the activations of ``batch`` images."""
        weights = self.params * (TRAINING_COPIES if training else 1)
        return FLOAT_BYTES * (weights + (self.activations or 0) * batch)


def footprint(
    spec: NetSpec, make: Callable[[NetSpec], nn.Module], img_size: int | None = None
) -> Footprint:
    """The network's parameter count, and its activations at ``img_size``: built by ``make``
    (the builder's network class) and run on the meta device, where nothing is allocated
    (ConvNeXt-L takes 0.2 s)."""
    with torch.device("meta"):
        model = make(spec).eval()  # one image: training-mode BatchNorm would refuse it
    params = sum(p.numel() for p in model.parameters())
    if img_size is None:
        return Footprint(params)
    total = [0]

    def count(module: nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor) and not any(True for _ in module.children()):
            total[0] += output.numel()

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    try:
        with torch.no_grad():
            model(torch.empty(1, spec.in_channels, img_size, img_size, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return Footprint(params, total[0])


def check_fits(
    spec: NetSpec,
    make: Callable[[NetSpec], nn.Module],
    img_size: int | None = None,
    batch: int = 1,
    training: bool = False,
    device: str | torch.device = "cpu",
) -> Footprint:
    """Refuse a network (and, given ``img_size``, a batch of it) that would not fit in the
    memory free now on ``device`` (the host's, or the GPU's), with the numbers; returns what it
    needs."""
    from roadmap.util.memory import available_bytes, gigabytes

    need = footprint(spec, make, img_size)
    on_gpu = torch.device(device).type == "cuda"
    free = torch.cuda.mem_get_info(device)[0] if on_gpu else available_bytes()
    if free is not None and need.bytes(batch, training) > free:
        what = f"{need.params:,} parameters ({gigabytes(need.bytes(0, training))}"
        what += " with gradients and optimizer state)" if training else ")"
        if need.activations is not None:
            what += (
                f" and {gigabytes(FLOAT_BYTES * need.activations * batch)} of activations for "
                f"{batch} image(s) at {img_size} px"
            )
        raise RoadmapError(
            f"this network needs {what}, more than the {gigabytes(free)} "
            f"{'the GPU' if on_gpu else 'this machine'} has free: "
            "make it smaller (widths, depths, expand_ratio) or ask for less"
        )
    return need
