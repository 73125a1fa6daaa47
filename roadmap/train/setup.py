"""What a recipe becomes at run time: timm's schedule, loss and Mixup; AMP; DDP and compile;
the starting weights.

The training loop (:mod:`roadmap.train.loop`) calls these; each takes the recipe or the run options
and returns a ready object, so the loop itself reads as the algorithm.
"""

from __future__ import annotations

import logging
import math
import random
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from roadmap.arch.selection import Selection
from roadmap.errors import RoadmapError
from roadmap.interop.pretrained import Loaded, load_pretrained, load_state
from roadmap.train import distributed
from roadmap.train.recipe import Recipe
from roadmap.train.run_options import RunOptions


def wrap(model: nn.Module, options: RunOptions, procs: distributed.Processes) -> nn.Module:
    net = model
    if procs.world > 1:
        device_ids = [procs.device.index] if procs.device.type == "cuda" else None
        net = DistributedDataParallel(model, device_ids=device_ids)
    return torch.compile(net) if options.compile else net


# torch's fused optimizer kernels: one pass over all parameters instead of a dozen ops per tensor.
# On the 2-core CPU they made the RepViT steps' training steps 0-7 % faster (0 at stage_ratio)
# (``benchmarks/train_cpu.py step``); elsewhere the optimizer keeps torch's default.
FUSED_ON_CPU = ("adam", "adamw")


def optimizer(model: nn.Module, recipe: Recipe, device: torch.device) -> torch.optim.Optimizer:
    """timm's optimizer for the recipe (no weight decay on norms and biases), fused on CPU."""
    fused = {"fused": True} if device.type == "cpu" and recipe.optimizer in FUSED_ON_CPU else {}
    return create_optimizer_v2(
        model, recipe.optimizer, lr=recipe.peak_lr(), weight_decay=recipe.weight_decay,
        eps=recipe.opt_eps, **fused,
    )  # fmt: skip


def schedule(
    optimizer: torch.optim.Optimizer, recipe: Recipe, steps_per_epoch: int
) -> CosineLRScheduler:
    """Cosine decay per update, after a linear warm-up (timm's scheduler, counted in updates).

    A run of one update has nothing to anneal, and timm says so on the terminal ("Cosine
    annealing scheduler will have no effect"); that is the run asked for, so it is not said.
    """
    log = logging.getLogger("timm.scheduler.cosine_lr")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return CosineLRScheduler(
            optimizer,
            t_initial=recipe.epochs * steps_per_epoch,
            lr_min=recipe.min_lr,
            warmup_t=round(recipe.warmup_epochs * steps_per_epoch),
            warmup_lr_init=recipe.warmup_lr,
            t_in_epochs=False,
        )
    finally:
        log.setLevel(level)


def criterion(recipe: Recipe) -> nn.Module:
    if recipe.uses_mixing:
        return SoftTargetCrossEntropy()  # Mixup makes (and smooths) the soft targets
    if recipe.label_smoothing > 0:
        return LabelSmoothingCrossEntropy(recipe.label_smoothing)
    return nn.CrossEntropyLoss()


def mixup(recipe: Recipe, num_classes: int) -> Mixup | None:
    if not recipe.uses_mixing:
        return None
    return Mixup(
        mixup_alpha=recipe.mixup,
        cutmix_alpha=recipe.cutmix,
        switch_prob=recipe.mixup_switch_prob,
        label_smoothing=recipe.label_smoothing,
        num_classes=num_classes,
    )


def amp_dtype(options: RunOptions) -> torch.dtype | None:
    if not options.amp:
        return None
    if options.device == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    """Mixed precision for the block, or nothing when ``dtype`` is None."""
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype)


def to_device(
    x: torch.Tensor, y: torch.Tensor, device: torch.device, channels_last: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch on the device, in the memory format the model uses."""
    memory_format = torch.channels_last if channels_last else torch.preserve_format
    x = x.to(device, non_blocking=True, memory_format=memory_format)
    return x, y.to(device, non_blocking=True)


def even(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup pairs images, so a batch shortened by a skipped image loses one more."""
    return (x[:-1], y[:-1]) if len(x) % 2 else (x, y)


def lr(optimizer: torch.optim.Optimizer) -> float:
    """The learning rate the optimizer uses now."""
    return optimizer.param_groups[0]["lr"]


def check_finite(loss_sum: torch.Tensor, epoch: int, iteration: int) -> None:
    if not math.isfinite(float(loss_sum)):
        raise RoadmapError(
            f"the loss became NaN/inf in epoch {epoch + 1} by iteration {iteration}; "
            "lower the learning rate (--base-lr) or turn off --amp"
        )


def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Seed every generator from (seed, epoch, rank): a resumed epoch repeats itself exactly."""
    state = np.random.SeedSequence([seed, epoch, rank]).generate_state(2)
    torch.manual_seed(int(state[0]))
    random.seed(int(state[1]))
    np.random.seed(int(state[1]))


def starting_weights(
    model: nn.Module, selection: Selection, options: RunOptions, procs: distributed.Processes
) -> Loaded | None:
    """Load ``--pretrained`` / ``--init`` into a fresh model (None when neither is asked);
    rank 0 goes first, since it may download, and the others then read timm's cache."""
    if not (options.pretrained or options.init):
        return None
    if not procs.primary:
        distributed.barrier(procs)
    if options.pretrained:
        loaded = load_pretrained(model, selection, options.pretrained_file)
    else:
        loaded = load_state(model, options.init)
    if procs.primary:
        distributed.barrier(procs)
    return loaded
