"""Accuracy: top-1/top-5 of several networks in one pass, and of a saved checkpoint.

``roadmap eval`` scores a checkpoint twice, in its training form and in its fused deploy form;
the two must agree (``fused_disagreements`` counts the images whose top-1 class differs).
Training scores the fused form after every epoch and both forms after the last one
(:func:`epoch_models`).

Evaluation runs under ``torch.inference_mode`` (no autograd bookkeeping at all) at twice the
training batch (no activations are kept for a backward pass), in the run's memory format.
On the 2-core CPU at 64 px, loading included, this scores the fused form 0.99-1.42x as fast
as the training form was scored under ``no_grad`` at the training batch, contiguous (1.22x
for RepViT-M0.9; ``benchmarks/train_cpu.py eval``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from timm.utils import accuracy
from torch import nn

from roadmap.arch.builder import build
from roadmap.arch.reparam import fuse
from roadmap.arch.selection import Selection
from roadmap.arch.spec import spec_hash
from roadmap.errors import RoadmapError
from roadmap.interop.pretrained import load_pretrained, load_reference_cfg, reference
from roadmap.train import checkpoint, distributed
from roadmap.train.data import batches, make_loader
from roadmap.train.distill import student_spec
from roadmap.train.recipe import Recipe, load_recipe, recipe_from_dict
from roadmap.train.run_options import RunOptions, open_data, workers
from roadmap.train.sources import parse_source

EVAL_BATCH = 128
EVAL_BATCH_FACTOR = 2  # evaluation batch / training batch (per process)


def epoch_models(
    model: nn.Module, ema: nn.Module | None, *, final: bool, channels_last: bool
) -> dict[str, nn.Module]:
    """What the evaluation after an epoch scores, by key prefix.

    Every epoch: the fused deploy form of the network (``""``) and of its EMA (``"ema_"``).
    It computes the function of the training form with fewer layers (BatchNorm folded, the
    re-parameterized branches merged), so it is cheaper, and it is what would ship. After the
    last epoch also the training form (``"train_"``), in the same pass, so that the record can
    show the two agree image for image (``train_disagreements``).
    """
    scored = {"": _deploy(model, channels_last)}
    if final:
        scored["train_"] = model
    if ema is not None:
        scored["ema_"] = _deploy(ema, channels_last)
    return scored


def _deploy(model: nn.Module, channels_last: bool) -> nn.Module:
    fused = fuse(model.eval())  # folded weights come out contiguous: restore the run's format
    return fused.to(memory_format=torch.channels_last) if channels_last else fused


@torch.inference_mode()
def evaluate(
    models: dict[str, nn.Module],
    loader: torch.utils.data.DataLoader,
    procs: distributed.Processes,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> dict[str, Any]:
    """Top-1 and top-5 accuracy (in %) of several networks in one pass over the loader.

    Args:
        models: networks by key prefix, e.g. ``{"": model, "fused_": fuse(model)}``.
        loader: the evaluation loader (each process scores its shard; counts are summed).
        procs: the processes.
        amp_dtype: autocast dtype, or None for full precision.
        channels_last: pass the images in NHWC memory format (the models' own).

    Returns:
        ``<prefix>top1`` and ``<prefix>top5`` per network; ``<prefix>disagreements``, the
        images where a later network's top-1 class differs from the first one's; ``images``
        scored and ``skipped`` bad images.
    """
    for model in models.values():
        model.eval()
    counts: dict[str, float] = {name: 0.0 for name in _count_names(models)}
    for x, y, dropped in batches(loader):
        counts["skipped"] += dropped
        if len(x) == 0:
            continue
        memory_format = torch.channels_last if channels_last else torch.preserve_format
        x, y = x.to(procs.device, memory_format=memory_format), y.to(procs.device)
        with torch.autocast(procs.device.type, amp_dtype, enabled=amp_dtype is not None):
            logits = {prefix: model(x).float() for prefix, model in models.items()}
        reference = next(iter(logits.values())).argmax(1)
        for i, (prefix, out) in enumerate(logits.items()):
            top1, top5 = accuracy(out, y, topk=(1, min(5, out.shape[1])))
            counts[f"{prefix}top1"] += top1.item() * len(y) / 100  # accuracy() gives percent
            counts[f"{prefix}top5"] += top5.item() * len(y) / 100
            if i:
                counts[f"{prefix}disagreements"] += (out.argmax(1) != reference).sum().item()
        counts["images"] += len(y)
    totals = distributed.sum_across(list(counts.values()), procs)
    return _percentages(dict(zip(counts, totals, strict=True)))


def _count_names(models: dict[str, nn.Module]) -> list[str]:
    names = ["images", "skipped"]
    for i, prefix in enumerate(models):
        names += [f"{prefix}top1", f"{prefix}top5"] + ([f"{prefix}disagreements"] if i else [])
    return names


def _percentages(counts: dict[str, float]) -> dict[str, Any]:
    images = counts["images"]
    if images == 0:
        raise RoadmapError("the validation split has no readable images")
    scores: dict[str, Any] = {}
    for name, value in counts.items():
        is_accuracy = name.endswith(("top1", "top5"))
        scores[name] = 100 * round(value) / images if is_accuracy else int(round(value))
    return scores


@dataclass(frozen=True)
class CheckpointScores:
    """A checkpoint's accuracy in its training form and its fused deploy form.

    Attributes:
        name: the network's name.
        steps: the steps it was built from.
        spec_hash: its spec's hash.
        weights: "model", "ema", or where pretrained weights came from (``timm:repvit_m0_9``).
        epochs_done: epochs the checkpoint holds (0 for pretrained weights).
        images: validation images scored.
        top1: top-1 % of the training form.
        top5: top-5 % of the training form.
        fused_top1: top-1 % of the fused form.
        fused_top5: top-5 % of the fused form.
        fused_disagreements: images whose top-1 class differs between the two forms.
        skipped: undecodable images skipped.
    """

    name: str
    steps: list[str]
    spec_hash: str
    weights: str
    epochs_done: int
    images: int
    top1: float
    top5: float
    fused_top1: float
    fused_top5: float
    fused_disagreements: int
    skipped: int

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def evaluate_checkpoint(
    selection: Selection,
    path: Path,
    data: str,
    options: RunOptions = RunOptions(),
    *,
    use_ema: bool = False,
) -> CheckpointScores:
    """Score a checkpoint in its training form and its fused deploy form on ``data``'s val split.

    The evaluation transform (resolution, crop) is the one of the recipe stored in the
    checkpoint.

    Raises:
        RoadmapError: a missing or foreign checkpoint, or data with other classes.
    """
    model, recipe, state = checkpoint_model(selection, path, use_ema)
    scores = _score(model, recipe, data, options, f"{path}")
    weights = "ema" if use_ema else "model"
    steps, done = list(state["steps"]), state["epochs_done"]
    return CheckpointScores(selection.name, steps, state["spec_hash"], weights, done, **scores)


def checkpoint_model(
    selection: Selection, path: Path, use_ema: bool = False
) -> tuple[nn.Module, Recipe, dict[str, Any]]:
    """The network a checkpoint holds (its EMA weights with ``use_ema``), the recipe it was
    trained with, and the checkpoint itself.

    Raises:
        RoadmapError: a missing, damaged or foreign checkpoint, or no EMA weights in it.
    """
    state = checkpoint.load(path)
    recipe = recipe_from_dict(state["recipe"], source=f"the recipe in {path}")
    spec = student_spec(selection.spec(state["num_classes"]), recipe)  # a distilled run's 2 heads
    checkpoint.check_spec(state, spec, path)
    model = build(spec)
    model.load_state_dict(_weights(state, use_ema, path))
    return model, recipe, state


def evaluate_pretrained(
    selection: Selection, data: str, options: RunOptions = RunOptions()
) -> CheckpointScores:
    """Score timm's published weights for ``selection`` (``roadmap eval --pretrained``), with
    the evaluation transform timm's weights were measured with (resolution, crop, resize)."""
    name = reference(selection)
    model = build(selection.spec(1000))
    loaded = load_pretrained(model, selection, options.pretrained_file)
    cfg = load_reference_cfg(name)
    recipe = load_recipe("paper").replace(
        img_size=cfg["input_size"][-1], crop_pct=cfg["crop_pct"], interpolation=cfg["interpolation"]
    )
    scores = _score(model, recipe, data, options, loaded.source)
    spec_digest = spec_hash(model.spec)
    return CheckpointScores(
        selection.name, list(selection.steps), spec_digest, loaded.source, 0, **scores
    )


def _score(
    model: nn.Module, recipe: Recipe, data: str, options: RunOptions, what: str
) -> dict[str, Any]:
    """Accuracy of ``model`` and of its fused form on the validation split of ``data``."""
    procs = distributed.start(options.device)
    try:
        opened = open_data(parse_source(data), recipe, options, procs)
        if opened.num_classes != model.num_classes:
            raise RoadmapError(
                f"{what} has {model.num_classes} classes, but {data} has {opened.num_classes}"
                + ("; fine-tune it first (roadmap train --pretrained)" if "timm:" in what else "")
            )
        memory_format = torch.channels_last if options.channels_last else torch.preserve_format
        model = model.to(procs.device, memory_format=memory_format)
        loader = make_loader(
            opened.val,
            EVAL_BATCH,
            train=False,
            workers=workers(options, opened),
            rank=procs.rank,
            world=procs.world,
        )
        fused = _deploy(model, options.channels_last)
        return evaluate({"": model, "fused_": fused}, loader, procs, None, options.channels_last)
    finally:
        distributed.stop()


def _weights(state: dict[str, Any], use_ema: bool, path: Path) -> dict[str, torch.Tensor]:
    if not use_ema:
        return state["model"]
    if state["ema"] is None:
        raise RoadmapError(f"{path} has no EMA weights (its recipe kept none); drop --ema")
    return state["ema"]
