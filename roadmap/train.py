"""Train and evaluate any roadmap step: one readable loop on timm's utilities.

``train`` builds the network a :class:`Selection` names, trains it with a :class:`Recipe`
and writes a record into the results store (see :mod:`roadmap.results`). ``evaluate_checkpoint``
scores a checkpoint in its training form and in its fused deploy form. ``sweep`` trains every
step of a prefix, skipping what the store already has.

Reproducibility: every epoch starts by re-seeding all random generators from
(seed, epoch, rank), and data-loader workers are re-created each epoch. A run resumed from
``last.pt`` therefore draws exactly the numbers an uninterrupted run would have drawn, and on
CPU it ends with the same metrics.

Ctrl-C: the first press finishes the current epoch, saves ``last.pt`` and stops (resume with
``--resume``); a second press stops at once, leaving the ``last.pt`` of the previous epoch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import platform
import random
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from timm.utils import ModelEmaV3, accuracy, dispatch_clip_grad
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from roadmap import distributed, results
from roadmap.build import build
from roadmap.data import (
    Datasets,
    DataSource,
    batches,
    default_workers,
    load_datasets,
    make_loader,
    parse_source,
)
from roadmap.errors import RoadmapError
from roadmap.measure import count
from roadmap.recipe import (
    LR_REFERENCE_BATCH,
    Recipe,
    builtin_recipes,
    load_recipe,
    recipe_from_dict,
    recipe_hash,
)
from roadmap.registry import build_spec, resolve_steps
from roadmap.reparam import fuse
from roadmap.spec import NetSpec, spec_hash

CHECKPOINT_FORMAT = "roadmap-checkpoint/1"
PROGRESS_EVERY = 10  # iterations between progress-bar refreshes (each one syncs the device)


# ----------------------------------------------------------------------------------------
# What to train, and how to run it


@dataclass(frozen=True)
class Selection:
    """Which network: a roadmap prefix (``upto``), an explicit step list, minus ``skip``."""

    upto: str | None = None
    steps: tuple[str, ...] | None = None
    skip: tuple[str, ...] = ()

    def resolve(self) -> list[str]:
        """The ordered step names."""
        return resolve_steps(self.upto, steps=self.steps, skip=self.skip)

    def name(self) -> str:
        """The store's name for it: the last step for a plain prefix, else an ablation name."""
        return run_name(self.resolve())

    def spec(self, num_classes: int) -> NetSpec:
        """The network's spec with ``num_classes`` outputs."""
        return build_spec(steps=self.resolve(), num_classes=num_classes)


def run_name(steps: list[str]) -> str:
    """``widen`` for a roadmap prefix, ``widen-without-separate_mixers`` for a prefix with steps
    left out, ``custom-<digest>`` for anything else (a reordering, a plug-in step)."""
    roadmap = resolve_steps()
    if steps == roadmap[: len(steps)]:
        return steps[-1]
    if all(name in roadmap for name in steps) and steps == sorted(steps, key=roadmap.index):
        prefix = roadmap[: roadmap.index(steps[-1]) + 1]
        missing = [name for name in prefix if name not in steps]
        return f"{steps[-1]}-without-{'+'.join(missing)}"
    return "custom-" + spec_hash_of_names(steps)


def spec_hash_of_names(steps: list[str]) -> str:
    """A short digest of a step list, for names of custom selections."""
    return hashlib.sha256(",".join(steps).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class RunOptions:
    """How to run a training, which does not change what is trained (nor the recipe hash).

    Attributes:
        seed: seed of initialization, data order and augmentation.
        workers: data-loader worker processes per training process (None: chosen per source).
        device: ``cpu`` or ``cuda``.
        amp: mixed precision (bfloat16 where supported, else float16 with loss scaling).
        channels_last: NHWC memory format for the model and its inputs.
        compile: ``torch.compile`` the training model.
        quiet: no progress bars or notes.
        resume: continue from the run folder's ``last.pt`` if it matches this run.
        download: allow CIFAR to download.
        bad_images: ``error`` or ``skip`` for an image that cannot be decoded.
        out: root of the results store.
        command: the command line to record (reconstructed from the arguments if None).
    """

    seed: int = 0
    workers: int | None = None
    device: str = "cpu"
    amp: bool = False
    channels_last: bool = False
    compile: bool = False
    quiet: bool = False
    resume: bool = False
    download: bool = False
    bad_images: str = "error"
    out: Path = Path("results")
    command: str | None = None


# ----------------------------------------------------------------------------------------
# The training run


@dataclass
class Run:
    """Everything one training run holds; built once by :func:`_prepare`."""

    selection: Selection
    recipe: Recipe
    options: RunOptions
    procs: distributed.Processes
    data: Datasets
    spec: NetSpec
    folder: Path
    model: nn.Module  # the raw network: evaluated, averaged and saved
    net: nn.Module  # what the loop calls: model, or its DDP / compiled wrapper
    optimizer: torch.optim.Optimizer
    scheduler: CosineLRScheduler
    criterion: nn.Module
    mixup: Mixup | None
    ema: ModelEmaV3 | None
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    train_loader: torch.utils.data.DataLoader
    val_loader: torch.utils.data.DataLoader
    display: Display
    start_epoch: int = 0
    updates: int = 0
    train_time: float = 0.0
    images_seen: int = 0
    skipped: int = 0
    best: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> results.RunKey:
        return _run_key(self.data.source, self.recipe, self.selection, self.options.seed)

    @property
    def global_batch(self) -> int:
        return self.recipe.batch_size


def train(
    selection: Selection, data: str, recipe: Recipe, options: RunOptions = RunOptions()
) -> dict[str, Any]:
    """Train one network and write its record; the single-process and torchrun entry point.

    Args:
        selection: which network.
        data: a ``--data`` source (``digits``, ``imagefolder:PATH``, …).
        recipe: how to train it.
        options: how to run it.

    Returns:
        The record written to ``metrics.json`` (identical on every rank).

    Raises:
        RoadmapError: bad data, a checkpoint that does not match, a loss that became NaN, ….
    """
    procs = distributed.start(options.device)
    try:
        opened = open_data(parse_source(data), recipe, options, procs)
        return fit(selection, opened, recipe, options, procs)
    finally:
        distributed.stop()


def fit(
    selection: Selection,
    data: Datasets,
    recipe: Recipe,
    options: RunOptions,
    procs: distributed.Processes,
) -> dict[str, Any]:
    """:func:`train` with the data open and the processes started (the sweep's building block)."""
    with ExitStack() as stack:
        run = _prepare(selection, data, recipe, options, procs, stack)
        if procs.primary:
            stack.callback(_remove_if_empty, run.folder)  # a run that failed before epoch 1
        stop = stack.enter_context(_graceful_interrupt())
        stack.enter_context(run.display)
        for epoch in range(run.start_epoch, recipe.epochs):
            summary = _train_and_evaluate(run, epoch)
            _save_epoch(run, epoch, summary)
            if distributed.any_across(stop.requested, procs) and epoch + 1 < recipe.epochs:
                run.display.note(
                    f"stopped after epoch {epoch + 1}/{recipe.epochs}; "
                    f"continue with --resume ({run.folder / results.CHECKPOINT})"
                )
                raise KeyboardInterrupt
        return _finish(run)


def _prepare(
    selection: Selection,
    data: Datasets,
    recipe: Recipe,
    options: RunOptions,
    procs: distributed.Processes,
    stack: ExitStack,
) -> Run:
    """Build the network and its optimizer, lock the run folder, and resume if asked."""
    if recipe.batch_size % procs.world:
        raise RoadmapError(
            f"the global batch {recipe.batch_size} does not split over {procs.world} processes; "
            f"pass a --batch-size that is a multiple of {procs.world}"
        )
    spec = selection.spec(data.num_classes)
    key = _run_key(data.source, recipe, selection, options.seed)
    folder = key.folder(options.out)
    if procs.primary:
        stack.enter_context(results.run_lock(folder))
    checkpoint = _checkpoint_to_resume(folder, spec, recipe, options, procs)
    torch.manual_seed(options.seed)  # the same initial weights on every rank
    model = build(spec).to(procs.device)
    if options.channels_last:
        model = model.to(memory_format=torch.channels_last)
    run = _assemble(selection, recipe, options, procs, data, spec, folder, model)
    if checkpoint is not None:
        _restore(run, checkpoint)
    elif procs.primary:
        _start_fresh(run)
    return run


def _assemble(
    selection: Selection,
    recipe: Recipe,
    options: RunOptions,
    procs: distributed.Processes,
    data: Datasets,
    spec: NetSpec,
    folder: Path,
    model: nn.Module,
) -> Run:
    """Wire optimizer, schedule, loss, Mixup, EMA, AMP and loaders around a fresh model."""
    per_rank = recipe.batch_size // procs.world
    workers = _workers(options, data)
    train_loader = make_loader(
        data.train,
        per_rank,
        train=True,
        workers=workers,
        seed=options.seed,
        rank=procs.rank,
        world=procs.world,
    )
    if len(train_loader) == 0:
        raise RoadmapError(
            f"the training split has {len(data.train)} images, fewer than one batch of "
            f"{per_rank}; pass a smaller --batch-size"
        )
    val_loader = make_loader(
        data.val,
        per_rank,
        train=False,
        workers=workers,
        rank=procs.rank,
        world=procs.world,
    )
    optimizer = create_optimizer_v2(
        model,
        recipe.optimizer,
        lr=recipe.lr(),
        weight_decay=recipe.weight_decay,
        eps=recipe.opt_eps,
    )
    amp_dtype = _amp_dtype(options)
    return Run(
        selection=selection,
        recipe=recipe,
        options=options,
        procs=procs,
        data=data,
        spec=spec,
        folder=folder,
        model=model,
        net=_wrap(model, options, procs),
        optimizer=optimizer,
        scheduler=_schedule(optimizer, recipe, len(train_loader)),
        criterion=_criterion(recipe),
        mixup=_mixup(recipe, data.num_classes),
        ema=ModelEmaV3(model, decay=recipe.ema_decay) if recipe.ema else None,
        scaler=torch.amp.GradScaler(procs.device.type, enabled=amp_dtype == torch.float16),
        amp_dtype=amp_dtype,
        train_loader=train_loader,
        val_loader=val_loader,
        display=Display(enabled=procs.primary and not options.quiet),
    )


def _train_and_evaluate(run: Run, epoch: int) -> dict[str, Any]:
    """One epoch of training, then evaluation of the network (and of its EMA)."""
    _seed_epoch(run.options.seed, epoch, run.procs.rank)
    if hasattr(run.train_loader.sampler, "set_epoch"):
        run.train_loader.sampler.set_epoch(epoch)
    if epoch == run.start_epoch:
        run.display.note(_describe(run))
    trained = _train_one_epoch(run, epoch)
    for model in _scored_models(run).values():
        distributed.average_batchnorm(model, run.procs)
    scores = evaluate(_scored_models(run), run.val_loader, run.procs, run.amp_dtype)
    run.skipped += trained.pop("skipped") + scores.pop("skipped")
    scores.pop("images"), scores.pop("ema_disagreements", None)
    summary = {"epoch": epoch + 1, **trained, **scores}
    run.display.end_epoch(epoch, run.recipe.epochs, summary)
    return summary


def _scored_models(run: Run) -> dict[str, nn.Module]:
    """The network, and its moving average when the recipe keeps one."""
    return {"": run.model} if run.ema is None else {"": run.model, "ema_": run.ema.module}


def _train_one_epoch(run: Run, epoch: int) -> dict[str, Any]:
    """The loop: forward, loss, backward, clip, step, schedule, EMA; returns epoch statistics."""
    run.net.train()
    loss_sum, steps, images, skipped = torch.zeros((), device=run.procs.device), 0, 0, 0
    run.display.start_epoch(epoch, run.recipe.epochs, len(run.train_loader))
    started = time.perf_counter()
    for i, (x, y, dropped) in enumerate(batches(run.train_loader)):
        skipped += dropped
        if len(x) < 2:
            continue  # a batch emptied by skipped bad images
        x, y = _to_device(x, y, run)
        if run.mixup is not None:
            x, y = run.mixup(*_even(x, y))
        with _autocast(run):
            loss = run.criterion(run.net(x), y)
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        if run.recipe.clip_grad is not None:
            run.scaler.unscale_(run.optimizer)
            dispatch_clip_grad(run.model.parameters(), run.recipe.clip_grad, run.recipe.clip_mode)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.updates += 1
        run.scheduler.step_update(run.updates)
        if run.ema is not None:
            run.ema.update(run.model, step=run.updates)
        loss_sum += loss.detach()
        steps, images = steps + 1, images + len(x) * run.procs.world
        if i % PROGRESS_EVERY == 0 or i + 1 == len(run.train_loader):
            _check_finite(loss_sum, epoch, i)
            elapsed = time.perf_counter() - started
            run.display.update(i + 1, loss.item(), _lr(run), images / max(elapsed, 1e-9))
    mean_loss = distributed.sum_across([loss_sum.item(), steps], run.procs)
    _check_finite(torch.tensor(mean_loss[0]), epoch, len(run.train_loader))
    elapsed = time.perf_counter() - started
    run.train_time, run.images_seen = run.train_time + elapsed, run.images_seen + images
    return {
        "train_loss": mean_loss[0] / max(mean_loss[1], 1),
        "lr": _lr(run),
        "global_batch": run.global_batch,
        "images_per_s": images / elapsed,
        "epoch_time_s": elapsed,
        "skipped": int(distributed.sum_across([skipped], run.procs)[0]),
    }


@torch.no_grad()
def evaluate(
    models: dict[str, nn.Module],
    loader: torch.utils.data.DataLoader,
    procs: distributed.Processes,
    amp_dtype: torch.dtype | None = None,
) -> dict[str, Any]:
    """Top-1 and top-5 accuracy (in %) of several networks in one pass over the loader.

    Args:
        models: networks by key prefix, e.g. ``{"": model, "fused_": fuse(model)}``.
        loader: the evaluation loader (each process scores its shard; counts are summed).
        procs: the processes.
        amp_dtype: autocast dtype, or None for full precision.

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
        x, y = x.to(procs.device), y.to(procs.device)
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


# ----------------------------------------------------------------------------------------
# Pieces the loop is wired from (timm utilities, chosen by the recipe)


def open_data(
    source: DataSource, recipe: Recipe, options: RunOptions, procs: distributed.Processes
) -> Datasets:
    """Open the data; with ``--download`` rank 0 fetches first while the others wait."""
    if options.download and not procs.primary:
        distributed.barrier(procs)
    data = load_datasets(
        source,
        recipe,
        download=options.download and procs.primary,
        bad_images=options.bad_images,
    )
    if options.download and procs.primary:
        distributed.barrier(procs)
    return data


def _run_key(source: DataSource, recipe: Recipe, selection: Selection, seed: int) -> results.RunKey:
    return results.RunKey(source.slug, _recipe_label(recipe), selection.name(), seed)


def _recipe_label(recipe: Recipe) -> str:
    """The recipe's folder name: its own name, plus its hash when overrides changed it."""
    if recipe.name in builtin_recipes() and recipe == load_recipe(recipe.name):
        return recipe.name
    if recipe.name not in builtin_recipes():
        return recipe.name  # a user's recipe file: its hash in the record tells versions apart
    return f"{recipe.name}-{recipe_hash(recipe)}"


def _workers(options: RunOptions, data: Datasets) -> int:
    return default_workers(data.source) if options.workers is None else options.workers


def _wrap(model: nn.Module, options: RunOptions, procs: distributed.Processes) -> nn.Module:
    net = model
    if procs.world > 1:
        device_ids = [procs.device.index] if procs.device.type == "cuda" else None
        net = DistributedDataParallel(model, device_ids=device_ids)
    return torch.compile(net) if options.compile else net


def _schedule(
    optimizer: torch.optim.Optimizer, recipe: Recipe, steps_per_epoch: int
) -> CosineLRScheduler:
    """Cosine decay per update, after a linear warm-up (timm's scheduler, counted in updates)."""
    return CosineLRScheduler(
        optimizer,
        t_initial=recipe.epochs * steps_per_epoch,
        lr_min=recipe.min_lr,
        warmup_t=round(recipe.warmup_epochs * steps_per_epoch),
        warmup_lr_init=recipe.warmup_lr,
        t_in_epochs=False,
    )


def _criterion(recipe: Recipe) -> nn.Module:
    if recipe.uses_mixing:
        return SoftTargetCrossEntropy()  # Mixup makes (and smooths) the soft targets
    if recipe.label_smoothing > 0:
        return LabelSmoothingCrossEntropy(recipe.label_smoothing)
    return nn.CrossEntropyLoss()


def _mixup(recipe: Recipe, num_classes: int) -> Mixup | None:
    if not recipe.uses_mixing:
        return None
    return Mixup(
        mixup_alpha=recipe.mixup,
        cutmix_alpha=recipe.cutmix,
        switch_prob=recipe.mixup_switch_prob,
        label_smoothing=recipe.label_smoothing,
        num_classes=num_classes,
    )


def _amp_dtype(options: RunOptions) -> torch.dtype | None:
    if not options.amp:
        return None
    if options.device == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def _autocast(run: Run) -> Any:
    if run.amp_dtype is None:
        return nullcontext()
    return torch.autocast(run.procs.device.type, run.amp_dtype)


def _to_device(x: torch.Tensor, y: torch.Tensor, run: Run) -> tuple[torch.Tensor, torch.Tensor]:
    memory_format = torch.channels_last if run.options.channels_last else torch.preserve_format
    x = x.to(run.procs.device, non_blocking=True, memory_format=memory_format)
    return x, y.to(run.procs.device, non_blocking=True)


def _even(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup pairs images, so a batch shortened by a skipped image loses one more."""
    return (x[:-1], y[:-1]) if len(x) % 2 else (x, y)


def _lr(run: Run) -> float:
    return run.optimizer.param_groups[0]["lr"]


def _check_finite(loss_sum: torch.Tensor, epoch: int, iteration: int) -> None:
    if not math.isfinite(float(loss_sum)):
        raise RoadmapError(
            f"the loss became NaN/inf in epoch {epoch + 1} by iteration {iteration}; "
            "lower the learning rate (--lr) or turn off --amp"
        )


def _seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Seed every generator from (seed, epoch, rank): a resumed epoch repeats itself exactly."""
    state = np.random.SeedSequence([seed, epoch, rank]).generate_state(2)
    torch.manual_seed(int(state[0]))
    random.seed(int(state[1]))
    np.random.seed(int(state[1]))


@contextmanager
def _graceful_interrupt() -> Iterator[Any]:
    """First Ctrl-C: finish the epoch, then stop. Second Ctrl-C: stop now."""
    flag = type("Stop", (), {"requested": False})()

    def handler(signum: int, frame: Any) -> None:
        flag.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print(
            "\nfinishing this epoch and saving last.pt; Ctrl-C again to stop now", file=sys.stderr
        )

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: keep the default behaviour
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


# ----------------------------------------------------------------------------------------
# Checkpoints


def _checkpoint_state(run: Run, epoch: int) -> dict[str, Any]:
    """Everything needed to continue after ``epoch``; loadable with ``weights_only=True``."""
    return {
        "format": CHECKPOINT_FORMAT,
        "steps": run.selection.resolve(),
        "spec_hash": spec_hash(run.spec),
        "num_classes": run.data.num_classes,
        "recipe": run.recipe.to_dict(),
        "recipe_hash": recipe_hash(run.recipe),
        "data": run.data.source.slug,
        "seed": run.options.seed,
        "epochs_done": epoch + 1,
        "updates": run.updates,
        "train_time_s": run.train_time,
        "images_seen": run.images_seen,
        "skipped": run.skipped,
        "best": run.best,
        "model": run.model.state_dict(),
        "ema": run.ema.module.state_dict() if run.ema is not None else None,
        "optimizer": run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict(),
    }


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write a checkpoint atomically (a crash mid-write leaves the previous one intact)."""
    results.atomic_write(path, lambda handle: torch.save(state, handle), binary=True)


def load_checkpoint(path: Path, spec: NetSpec | None = None) -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``) and, given a spec, check it fits.

    Raises:
        RoadmapError: the file is missing, damaged, not a roadmap checkpoint, or was trained
            for another network.
    """
    path = Path(path)
    if not path.is_file():
        raise RoadmapError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged or foreign files
        raise RoadmapError(f"{path} is not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise RoadmapError(f"{path} is not a roadmap checkpoint (no {CHECKPOINT_FORMAT!r} tag)")
    if spec is not None:
        check_spec(state, spec, path)
    return state


def check_spec(state: dict[str, Any], spec: NetSpec, path: Path) -> None:
    """A clear error, before any shape mismatch, when a checkpoint holds another network."""
    if state["spec_hash"] != spec_hash(spec):
        name, steps = run_name(state["steps"]), state["steps"]
        same = f"--upto {name}" if name == steps[-1] else f"--steps {','.join(steps)}"
        raise RoadmapError(
            f"{path} holds {name} (spec {state['spec_hash']}), not the network asked for "
            f"(spec {spec_hash(spec)}); pass {same}"
        )


def _checkpoint_to_resume(
    folder: Path,
    spec: NetSpec,
    recipe: Recipe,
    options: RunOptions,
    procs: distributed.Processes,
) -> dict[str, Any] | None:
    path = folder / results.CHECKPOINT
    if not options.resume or not path.exists():
        return None
    state = load_checkpoint(path, spec)
    if state["recipe_hash"] != recipe_hash(recipe) or state["seed"] != options.seed:
        raise RoadmapError(
            f"{path} was made with another recipe or seed (recipe {state['recipe_hash']}, "
            f"seed {state['seed']}); resume with the same ones, or drop --resume to start over"
        )
    return state


def _restore(run: Run, state: dict[str, Any]) -> None:
    run.model.load_state_dict(state["model"])
    if run.ema is not None and state["ema"] is not None:
        run.ema.module.load_state_dict(state["ema"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scaler.load_state_dict(state["scaler"])
    run.start_epoch, run.updates = state["epochs_done"], state["updates"]
    run.train_time, run.images_seen = state["train_time_s"], state["images_seen"]
    run.skipped, run.best = state["skipped"], state["best"]
    run.scheduler.step_update(run.updates)
    if run.procs.primary:  # keep exactly the log lines of the epochs the checkpoint holds
        log = run.folder / results.LOG
        kept = [r for r in results.read_jsonl(log) if r["epoch"] <= run.start_epoch]
        results.write_text(log, "".join(results.json_line(r) for r in kept))
    run.display.note(f"resuming {run.folder} after epoch {run.start_epoch}")


def _start_fresh(run: Run) -> None:
    moved = results.set_aside(run.folder)
    if moved is not None:
        run.display.note(f"an earlier record was moved to {moved}")
    run.folder.mkdir(parents=True, exist_ok=True)
    (run.folder / results.LOG).unlink(missing_ok=True)
    (run.folder / results.CHECKPOINT).unlink(missing_ok=True)


def _remove_if_empty(folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def _save_epoch(run: Run, epoch: int, summary: dict[str, Any]) -> None:
    """Track the best epoch, append the log line and write last.pt (rank 0 only)."""
    for prefix in ("", "ema_"):
        if f"{prefix}top1" in summary and summary[f"{prefix}top1"] > run.best.get(
            f"{prefix}top1", -1.0
        ):
            run.best.update(
                {
                    f"{prefix}top1": summary[f"{prefix}top1"],
                    f"{prefix}top5": summary[f"{prefix}top5"],
                    f"{prefix}epoch": epoch + 1,
                }
            )
    if not run.procs.primary:
        return
    line = {**summary, "synthetic": True} if run.data.source.synthetic else summary
    results.append_jsonl(run.folder / results.LOG, line)
    save_checkpoint(_checkpoint_state(run, epoch), run.folder / results.CHECKPOINT)


# ----------------------------------------------------------------------------------------
# The record


def _finish(run: Run) -> dict[str, Any]:
    """Score the fused network, write spec, recipe and finally metrics.json (rank 0)."""
    models = {**_scored_models(run), "fused_": fuse(run.model.eval())}
    scores = evaluate(models, run.val_loader, run.procs, run.amp_dtype)
    record = _record(run, scores)
    if run.procs.primary:
        results.write_text(run.folder / "spec.yaml", run.spec.to_yaml())
        results.write_text(run.folder / "recipe.yaml", run.recipe.to_yaml())
        results.write_json(run.folder / results.METRICS, record)
        run.display.note(f"record written to {run.folder / results.METRICS}")
    return record


def _record(run: Run, scores: dict[str, Any]) -> dict[str, Any]:
    counts = count(run.model, run.recipe.img_size).to_dict()
    record = {
        "data": run.data.source.slug,
        "synthetic": run.data.source.synthetic,
        "recipe": run.key.recipe,
        "name": run.key.name,
        "seed": run.options.seed,
        "steps": run.selection.resolve(),
        "spec_hash": spec_hash(run.spec),
        "recipe_hash": recipe_hash(run.recipe),
        "num_classes": run.data.num_classes,
        "top1": scores["top1"],
        "top5": scores["top5"],
        "best_top1": run.best.get("top1"),
        "best_top5": run.best.get("top5"),
        "best_epoch": run.best.get("epoch"),
        "fused_top1": scores["fused_top1"],
        "fused_top5": scores["fused_top5"],
        "fused_disagreements": scores["fused_disagreements"],
        "val_images": scores["images"],
        **_ema_fields(run, scores),
        **counts,
        "epochs": run.recipe.epochs,
        "train_time_s": run.train_time,
        "images_per_s": run.images_seen / max(run.train_time, 1e-9),
        "skipped_images": run.skipped,
        "lr": _lr_rule(run),
        "environment": _environment(run),
        "command": run.options.command or _equivalent_command(run),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return record


def _ema_fields(run: Run, scores: dict[str, Any]) -> dict[str, Any]:
    if run.ema is None:
        return {}
    return {
        "ema_top1": scores["ema_top1"],
        "ema_top5": scores["ema_top5"],
        "best_ema_top1": run.best.get("ema_top1"),
        "best_ema_top5": run.best.get("ema_top5"),
    }


def _lr_rule(run: Run) -> dict[str, Any]:
    return {
        "rule": f"base_lr x global_batch / {LR_REFERENCE_BATCH}",
        "base_lr": run.recipe.base_lr,
        "global_batch": run.global_batch,
        "per_process_batch": run.global_batch // run.procs.world,
        "processes": run.procs.world,
        "peak_lr": run.recipe.lr(),
    }


def _environment(run: Run) -> dict[str, Any]:
    device = run.procs.device
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "platform": platform.platform(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "processes": run.procs.world,
        "threads": torch.get_num_threads(),
        "workers": _workers(run.options, run.data),
        "amp": str(run.amp_dtype).removeprefix("torch.") if run.amp_dtype else None,
        "channels_last": run.options.channels_last,
        "compile": run.options.compile,
    }


def _equivalent_command(run: Run) -> str:
    """The ``roadmap train`` command that repeats this run (for calls made from Python)."""
    words = ["roadmap", "train", "--steps", ",".join(run.selection.resolve())]
    words += [
        "--data",
        run.data.source.kind + (f":{run.data.source.location}" if run.data.source.location else ""),
    ]
    words += ["--recipe", run.recipe.name, "--seed", str(run.options.seed)]
    words += ["--epochs", str(run.recipe.epochs), "--batch-size", str(run.recipe.batch_size)]
    words += ["--lr", repr(run.recipe.base_lr), "--img-size", str(run.recipe.img_size)]
    return shlex.join(words)


def _describe(run: Run) -> str:
    """The opening note: what trains on what, and the learning-rate rule with the batch."""
    r, procs = run.recipe, run.procs
    text = (
        f"training {run.key.name} on {run.data.source.slug} ({len(run.data.train)} train / "
        f"{len(run.data.val)} val images, {run.data.num_classes} classes), recipe {r.name}: "
        f"lr = {r.base_lr:g} x {r.batch_size} / {LR_REFERENCE_BATCH} = {r.lr():.3g} "
        f"(global batch {r.batch_size} = {r.batch_size // procs.world} x {procs.world} "
        f"process{'es' if procs.world > 1 else ''})"
    )
    if run.data.source.synthetic:
        text += "; SYNTHETIC data: throughput only, accuracy means nothing"
    return text


# ----------------------------------------------------------------------------------------
# Evaluating a checkpoint, and sweeping the roadmap


def evaluate_checkpoint(
    selection: Selection,
    checkpoint: Path,
    data: str,
    options: RunOptions = RunOptions(),
    *,
    use_ema: bool = False,
) -> dict[str, Any]:
    """Score a checkpoint in its training form and its fused deploy form on ``data``'s val split.

    The evaluation transform (resolution, crop) is the one of the recipe stored in the
    checkpoint.

    Args:
        selection: the network the checkpoint must hold.
        checkpoint: a ``last.pt``.
        data: a ``--data`` source with the same number of classes.
        options: device, workers, bad-image policy, download.
        use_ema: score the moving-average weights instead of the trained ones.

    Returns:
        ``top1``/``top5``, ``fused_top1``/``fused_top5``, ``fused_disagreements`` (images whose
        top-1 class differs between the two forms), ``images``, and what was scored.

    Raises:
        RoadmapError: a missing or foreign checkpoint, or data with other classes.
    """
    state = load_checkpoint(checkpoint)
    spec = selection.spec(state["num_classes"])
    check_spec(state, spec, checkpoint)
    weights = _weights(state, use_ema, checkpoint)
    procs = distributed.start(options.device)
    try:
        recipe = recipe_from_dict(state["recipe"], source=f"the recipe in {checkpoint}")
        opened = open_data(parse_source(data), recipe, options, procs)
        if opened.num_classes != state["num_classes"]:
            raise RoadmapError(
                f"{checkpoint} has {state['num_classes']} classes, but {data} has "
                f"{opened.num_classes}"
            )
        model = build(spec).to(procs.device)
        model.load_state_dict(weights)
        loader = make_loader(
            opened.val,
            64,
            train=False,
            workers=_workers(options, opened),
            rank=procs.rank,
            world=procs.world,
        )
        scores = evaluate({"": model, "fused_": fuse(model.eval())}, loader, procs)
    finally:
        distributed.stop()
    return {
        "steps": state["steps"],
        "spec_hash": state["spec_hash"],
        "weights": "ema" if use_ema else "model",
        "epochs_done": state["epochs_done"],
        **scores,
    }


def _weights(state: dict[str, Any], use_ema: bool, path: Path) -> dict[str, torch.Tensor]:
    if not use_ema:
        return state["model"]
    if state["ema"] is None:
        raise RoadmapError(f"{path} has no EMA weights (its recipe kept none); drop --ema")
    return state["ema"]


def plan(upto: str | None = None, skip: tuple[str, ...] = ()) -> list[Selection]:
    """The selections a sweep trains: every prefix of the (possibly ablated) roadmap."""
    names = resolve_steps(upto, skip=skip)
    return [Selection(steps=tuple(names[: i + 1])) for i in range(len(names))]


def sweep(
    data: str,
    recipe: Recipe,
    *,
    upto: str | None = None,
    skip: tuple[str, ...] = (),
    seeds: tuple[int, ...] = (0,),
    options: RunOptions = RunOptions(),
    selections: list[Selection] | None = None,
) -> list[dict[str, Any]]:
    """Train every step of a prefix for every seed, skipping what the store already holds.

    ``selections`` replaces the prefix (``upto``/``skip``) with an explicit set of networks,
    e.g. the leave-one-out ablations.

    A step whose folder has a record with the same spec and recipe hash is skipped; one that
    another process is training right now is skipped too (run two sweeps side by side); an
    interrupted one resumes from its ``last.pt``.

    Returns:
        One outcome per (step, seed): ``name``, ``seed``, ``status`` (``trained``, ``stored``
        or ``busy``) and the record when there is one.
    """
    procs = distributed.start(options.device)
    try:
        opened = open_data(parse_source(data), recipe, options, procs)
        outcomes = []
        for seed in seeds:
            for selection in selections or plan(upto, skip):
                run_options = dataclasses.replace(options, seed=seed, resume=True)
                outcomes.append(_sweep_one(selection, opened, recipe, run_options, procs))
        return outcomes
    finally:
        distributed.stop()


def _sweep_one(
    selection: Selection,
    data: Datasets,
    recipe: Recipe,
    options: RunOptions,
    procs: distributed.Processes,
) -> dict[str, Any]:
    """Train one selection unless the store has it, or another process is training it."""
    folder = _run_key(data.source, recipe, selection, options.seed).folder(options.out)
    spec = selection.spec(data.num_classes)
    record = results.find_record(folder, spec_hash(spec), recipe_hash(recipe))
    status = "stored" if record else "busy" if results.is_locked(folder) else "trained"
    # rank 0 decides (only it may probe the lock); the others follow
    code = distributed.sum_across([_STATUS.index(status) if procs.primary else 0], procs)[0]
    status = _STATUS[int(code)]
    if status == "trained":
        if not _matches(folder, spec, recipe, options.seed):
            options = dataclasses.replace(options, resume=False)
        record = fit(selection, data, recipe, options, procs)
    return {"name": selection.name(), "seed": options.seed, "status": status, "record": record}


_STATUS = ("trained", "stored", "busy")


def _matches(folder: Path, spec: NetSpec, recipe: Recipe, seed: int) -> bool:
    """Whether the folder's last.pt is this run's (so resuming it is right)."""
    path = folder / results.CHECKPOINT
    if not path.exists():
        return False
    try:
        state = load_checkpoint(path)
    except RoadmapError:
        return False
    return (state["spec_hash"], state["recipe_hash"], state["seed"]) == (
        spec_hash(spec),
        recipe_hash(recipe),
        seed,
    )


# ----------------------------------------------------------------------------------------
# Rendering (the CLI prints these)


def record_table(record: dict[str, Any]) -> Table:
    """A finished run's record as a two-column table."""
    table = Table(
        title=f"{record['name']} on {record['data']}, recipe {record['recipe']}, "
        f"seed {record['seed']}",
        show_header=False,
    )
    table.add_column("", style="bold")
    table.add_column("")
    rows = [
        ("top-1 / top-5 (final)", f"{record['top1']:.2f} / {record['top5']:.2f} %"),
        ("top-1 best (epoch)", f"{record['best_top1']:.2f} % ({record['best_epoch']})"),
        ("fused top-1 / top-5", f"{record['fused_top1']:.2f} / {record['fused_top5']:.2f} %"),
        ("params train / fused", f"{record['params']:,} / {record['deploy_params']:,}"),
        (
            "MACs train / fused",
            f"{record['macs']:,} / {record['deploy_macs']:,} at {record['img_size']} px",
        ),
        ("train time", f"{record['train_time_s']:.1f} s, {record['images_per_s']:,.0f} img/s"),
        (
            "learning rate",
            f"{record['lr']['peak_lr']:.3g} at global batch {record['lr']['global_batch']}",
        ),
    ]
    if "ema_top1" in record:
        ema = f"{record['ema_top1']:.2f} / {record['ema_top5']:.2f} %"
        rows.insert(1, ("EMA top-1 / top-5", ema))
    if record["synthetic"]:
        rows.insert(0, ("data", "SYNTHETIC: throughput only, accuracy means nothing"))
    for row in rows:
        table.add_row(*row)
    return table


def sweep_table(outcomes: list[dict[str, Any]]) -> Table:
    """One row per (step, seed) of a sweep: what happened and the top-1."""
    table = Table(title="sweep")
    for column in ("step", "seed", "status", "top-1 %", "fused top-1 %"):
        table.add_column(column, justify="right" if "%" in column or column == "seed" else "left")
    for outcome in outcomes:
        record = outcome["record"] or {}
        top1, fused = record.get("top1"), record.get("fused_top1")
        table.add_row(
            outcome["name"],
            str(outcome["seed"]),
            outcome["status"],
            "—" if top1 is None else f"{top1:.2f}",
            "—" if fused is None else f"{fused:.2f}",
        )
    return table


def eval_table(scores: dict[str, Any]) -> Table:
    """Accuracy of the training form beside the fused deploy form."""
    table = Table(
        title=f"{scores['steps'][-1]} ({scores['weights']} weights, {scores['images']} images)"
    )
    for column in ("form", "top-1 %", "top-5 %"):
        table.add_column(column, justify="left" if column == "form" else "right")
    table.add_row("training", f"{scores['top1']:.2f}", f"{scores['top5']:.2f}")
    table.add_row("fused", f"{scores['fused_top1']:.2f}", f"{scores['fused_top5']:.2f}")
    table.caption = f"top-1 class differs on {scores['fused_disagreements']} images"
    return table


# ----------------------------------------------------------------------------------------
# Progress display


class Display:
    """Rich progress bars for epochs and iterations (no output when disabled)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not enabled,
        )
        self.epochs_task: Any = None
        self.iter_task: Any = None

    def __enter__(self) -> Display:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def note(self, text: str) -> None:
        """A line above the bars."""
        if self.enabled:
            self.progress.console.print(text, highlight=False, markup=False)

    def start_epoch(self, epoch: int, epochs: int, iterations: int) -> None:
        if not self.enabled:
            return
        if self.epochs_task is None:
            self.epochs_task = self.progress.add_task(
                "epochs", total=epochs, completed=epoch, info=""
            )
        if self.iter_task is not None:
            self.progress.remove_task(self.iter_task)
        self.iter_task = self.progress.add_task(f"epoch {epoch + 1}", total=iterations, info="")

    def update(self, done: int, loss: float, lr: float, images_per_s: float) -> None:
        if self.enabled:
            info = f"loss {loss:.3f}  lr {lr:.2e}  {images_per_s:,.0f} img/s"
            self.progress.update(self.iter_task, completed=done, info=info)

    def end_epoch(self, epoch: int, epochs: int, summary: dict[str, Any]) -> None:
        if self.enabled:
            info = f"top-1 {summary['top1']:.1f}%  loss {summary['train_loss']:.3f}"
            self.progress.update(self.epochs_task, completed=epoch + 1, info=info)
