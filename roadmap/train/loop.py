"""Train any roadmap network: one readable loop on timm's utilities.

``train`` builds the network a :class:`~roadmap.arch.selection.Selection` names, trains it with
a :class:`~roadmap.train.recipe.Recipe` and writes a :class:`~roadmap.results.record.RunRecord`
into the results store (:mod:`roadmap.results.store`). The loop reads top to bottom:

    prepare (build, lock the run folder, resume) -> for each epoch: train, evaluate, save
    -> score the fused network -> write the record

Reproducibility: every epoch starts by re-seeding all random generators from
(seed, epoch, rank), and data-loader workers are re-created each epoch. A run resumed from
``last.pt`` therefore draws exactly the numbers an uninterrupted run would have drawn, and on
CPU it ends with the same metrics.

Nothing is lost: after each epoch ``last.pt`` is written first (atomically) and the epoch log
is rewritten from it second, so a kill at any moment leaves a checkpoint of the last finished
epoch and a log that claims no more than it. Ctrl-C and SIGTERM stop cleanly
(:mod:`roadmap.train.interrupt`).
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from timm.data import Mixup
from timm.scheduler import CosineLRScheduler
from timm.utils import ModelEmaV3, dispatch_clip_grad
from torch import nn

from roadmap.arch.builder import RoadmapNet, build
from roadmap.arch.footprint import check_fits
from roadmap.arch.selection import Selection
from roadmap.arch.spec import NetSpec, spec_hash
from roadmap.errors import RoadmapError, Stopped
from roadmap.interop.pretrained import Loaded
from roadmap.measure import host
from roadmap.measure.counts import count
from roadmap.results import store
from roadmap.results.record import Environment, RunRecord
from roadmap.train import checkpoint, distill, distributed, interrupt, setup, tracking
from roadmap.train.data import Datasets, batches, make_loader
from roadmap.train.evaluate import EVAL_BATCH_FACTOR, epoch_models, evaluate
from roadmap.train.identity import legacy_names, run_key
from roadmap.train.interrupt import StopRequest
from roadmap.train.progress import Display, describe_run
from roadmap.train.recipe import Recipe, lr_rule, recipe_hash
from roadmap.train.run_options import RunOptions, equivalent_command, open_data, workers
from roadmap.train.sources import parse_source
from roadmap.util import files

PROGRESS_EVERY = 10  # iterations between progress refreshes (each one syncs the device)


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
    stop: StopRequest = field(default_factory=StopRequest)
    progress: checkpoint.Progress = field(default_factory=checkpoint.Progress)
    start_epoch: int = 0  # the first epoch this process trains (> 0 when resumed)
    started_from: Loaded | None = None  # --pretrained / --init (None: a fresh init)
    teacher: distill.Teacher | None = None  # the recipe distils: criterion takes the inputs too
    watch: host.CpuWatch | None = None  # how busy other work keeps the machine meanwhile
    trackers: tracking.Trackers | None = None  # --log: TensorBoard, W&B, MLflow views
    final_scores: dict[str, Any] | None = None  # the last epoch's pass: both forms scored

    @property
    def key(self) -> store.RunKey:
        return run_key(self.data.source, self.recipe, self.selection, self.options)


class _Abandoned(Exception):
    """SIGTERM arrived mid-epoch: the epoch is dropped, last.pt keeps the previous one."""


def train(
    selection: Selection, data: str, recipe: Recipe, options: RunOptions = RunOptions()
) -> RunRecord:
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
        Stopped: Ctrl-C or SIGTERM stopped the run after saving what it had.
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
) -> RunRecord:
    """:func:`train` with the data open and the processes started (the sweep's building block)."""
    with ExitStack() as stack:
        watch = host.CpuWatch()
        run = _prepare(selection, data, recipe, options, procs, stack)
        run.watch = watch
        resumed_at = run.progress.updates if run.start_epoch else None
        names = options.log if procs.primary else ()  # rank 0 writes the trackers
        run.trackers = tracking.Trackers.for_run(names, run.key, run.folder, run.spec, recipe,
                                                 options.results, resumed_at)  # fmt: skip
        stack.callback(run.trackers.close)
        run.stop = interrupt.current()  # what the program's graceful_stop block was asked
        if procs.primary:
            stack.callback(store.remove_if_empty, run.folder)  # failed before epoch 1
        stack.enter_context(run.display)
        for epoch in range(run.start_epoch, recipe.epochs):
            try:
                summary = _train_and_evaluate(run, epoch)
            except Exception as e:  # after SIGTERM, a loader whose workers died is expected
                if not (isinstance(e, _Abandoned) or run.stop.now):
                    raise
                raise _stopped(run, f"by SIGTERM during epoch {epoch + 1}", epoch) from None
            _save_epoch(run, epoch, summary)
            run.trackers.epoch(summary, run.progress.updates)
            asked = run.stop.after_epoch or run.stop.now
            if distributed.any_across(asked, procs) and epoch + 1 < recipe.epochs:
                cause = "by SIGTERM" if run.stop.now else "by Ctrl-C"
                raise _stopped(run, f"{cause} after epoch {epoch + 1}", epoch + 1)
        return _finish(run)


def _stopped(run: Run, when: str, done: int) -> Stopped:
    """The message a stopped run leaves: what the checkpoint holds and how to go on."""
    path = run.folder / store.CHECKPOINT
    kept = f"last.pt holds {done} finished epoch(s) ({path})" if done else "no epoch finished"
    return Stopped(
        f"stopped {when}/{run.recipe.epochs}; {kept}; run the same command with --resume "
        "to continue",
        run.stop.exit_code,
    )


def _prepare(
    selection: Selection,
    data: Datasets,
    recipe: Recipe,
    options: RunOptions,
    procs: distributed.Processes,
    stack: ExitStack,
) -> Run:
    """Build the network and its optimizer, lock the run folder, and resume if asked."""
    tracking.check_available(options.log)
    per_rank = distributed.per_process_batch(recipe.batch_size, procs)
    spec = distill.student_spec(selection.spec(data.num_classes), recipe)
    check_fits(spec, RoadmapNet, recipe.img_size, per_rank, training=True, device=procs.device)
    folder = run_key(data.source, recipe, selection, options).folder(options.results)
    if procs.primary:
        stack.enter_context(store.run_lock(folder))
    if not (options.resume or options.retrain):
        store.refuse_if_finished(folder, spec_hash(spec), recipe_hash(recipe))
    moved = store.adopt_legacy(folder, legacy_names(selection)) if procs.primary else None
    path = folder / store.CHECKPOINT
    state = checkpoint.to_resume(path, spec, recipe, options.seed) if options.resume else None
    torch.manual_seed(options.seed)  # the same initial weights on every rank
    model = build(spec)
    model.set_distilled_training(recipe.distillation != "none")
    started = setup.starting_weights(model, selection, options, procs) if state is None else None
    model = model.to(procs.device)
    if options.channels_last:
        model = model.to(memory_format=torch.channels_last)
    run = _assemble(selection, recipe, options, procs, data, spec, folder, model)
    run.started_from = started
    run.teacher = distill.teacher_for(recipe, data.num_classes, options, procs)
    if run.teacher is not None:
        run.criterion = distill.DistillationLoss.of(run.criterion, run.teacher.model, recipe)
        if not (options.teacher_pretrained or options.teacher_checkpoint):
            run.display.note(
                f"warning: the teacher {recipe.teacher} has random weights and teaches nothing; "
                "give it --teacher-pretrained or --teacher-checkpoint FILE"
            )
    if moved is not None:
        run.display.note(f"found this run under its 0.1 name; moved {moved} to {folder}")
    if state is not None:
        ema = run.ema.module if run.ema is not None else None
        log = store.read_jsonl(folder / store.LOG)
        run.progress = checkpoint.restore(state, model, ema, run.optimizer, run.scaler, log)
        run.start_epoch = run.progress.epochs_done
        run.scheduler.step_update(run.progress.updates)
        if procs.primary:  # the log says exactly what the checkpoint holds
            store.write_log(folder / store.LOG, run.progress.history)
        run.display.note(f"resuming {folder} after epoch {run.start_epoch}")
    elif procs.primary:
        moved = store.start_fresh(folder)
        if moved is not None:
            run.display.note(f"an earlier record was moved to {moved}")
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
    n_workers = workers(options, data)
    place = {"workers": n_workers, "rank": procs.rank, "world": procs.world}
    train_loader = make_loader(data.train, per_rank, train=True, seed=options.seed, **place)
    if len(train_loader) == 0:
        raise RoadmapError(
            f"the training split has {len(data.train)} images, fewer than one batch of "
            f"{per_rank}; pass a smaller --batch-size"
        )
    val_loader = make_loader(data.val, EVAL_BATCH_FACTOR * per_rank, train=False, **place)
    optimizer = setup.optimizer(model, recipe, procs.device)
    amp_dtype = setup.amp_dtype(options)
    return Run(
        selection=selection,
        recipe=recipe,
        options=options,
        procs=procs,
        data=data,
        spec=spec,
        folder=folder,
        model=model,
        net=setup.wrap(model, options, procs),
        optimizer=optimizer,
        scheduler=setup.schedule(optimizer, recipe, len(train_loader)),
        criterion=setup.criterion(recipe),
        mixup=setup.mixup(recipe, data.num_classes),
        ema=ModelEmaV3(model, decay=recipe.ema_decay) if recipe.ema else None,
        scaler=torch.amp.GradScaler(procs.device.type, enabled=amp_dtype == torch.float16),
        amp_dtype=amp_dtype,
        train_loader=train_loader,
        val_loader=val_loader,
        display=Display(enabled=procs.primary and not options.quiet),
    )


# ----------------------------------------------------------------------------------------
# One epoch


def _train_and_evaluate(run: Run, epoch: int) -> dict[str, Any]:
    """One epoch of training, then evaluation of the network (and of its EMA)."""
    setup.seed_epoch(run.options.seed, epoch, run.procs.rank)
    if hasattr(run.train_loader.sampler, "set_epoch"):
        run.train_loader.sampler.set_epoch(epoch)
    if epoch == run.start_epoch:
        run.display.note(
            describe_run(run.key.name, run.data, run.recipe, run.procs.world, run.started_from)
        )
    trained = _train_one_epoch(run, epoch)
    for model in (run.model, run.ema.module if run.ema is not None else None):
        if model is not None:
            distributed.average_batchnorm(model, run.procs)
    final = epoch + 1 == run.recipe.epochs
    scored = final or (epoch + 1) % run.recipe.eval_every == 0
    scores = _score(run, final) if scored else {"skipped": 0}
    run.progress.skipped += trained.pop("skipped") + scores["skipped"]
    kept = ("top1", "top5", "ema_top1", "ema_top5")  # the deploy forms' scores
    summary = {"epoch": epoch + 1, **trained, **{key: scores[key] for key in kept if key in scores}}
    run.display.end_epoch(epoch, run.recipe.epochs, summary)
    return summary


def _score(run: Run, final: bool) -> dict[str, Any]:
    """One pass (:func:`~roadmap.train.evaluate.epoch_models`); the last is kept for the record."""
    ema = run.ema.module if run.ema is not None else None
    models = epoch_models(run.model, ema, final=final, channels_last=run.options.channels_last)
    scores = evaluate(models, run.val_loader, run.procs, run.amp_dtype, run.options.channels_last)
    if final:
        run.final_scores = scores
    return scores


def _train_one_epoch(run: Run, epoch: int) -> dict[str, Any]:
    """The loop: forward, loss, backward, clip, step, schedule, EMA; returns epoch statistics."""
    run.net.train()
    loss_sum, steps, images, skipped = torch.zeros((), device=run.procs.device), 0, 0, 0
    run.display.start_epoch(epoch, run.recipe.epochs, len(run.train_loader))
    started = time.perf_counter()
    for i, (x, y, dropped) in enumerate(batches(run.train_loader)):
        _check_sigterm(run, i)
        skipped += dropped
        if len(x) < 2:
            continue  # a batch emptied by skipped bad images
        x, y = setup.to_device(x, y, run.procs.device, run.options.channels_last)
        if run.mixup is not None:
            x, y = run.mixup(*setup.even(x, y))
        with setup.autocast(run.procs.device, run.amp_dtype):
            out = run.net(x)
            loss = run.criterion(out, y) if run.teacher is None else run.criterion(x, out, y)
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        if run.recipe.clip_grad is not None:
            run.scaler.unscale_(run.optimizer)
            dispatch_clip_grad(run.model.parameters(), run.recipe.clip_grad, run.recipe.clip_mode)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.progress.updates += 1
        run.scheduler.step_update(run.progress.updates)
        if run.ema is not None:
            run.ema.update(run.model, step=run.progress.updates)
        loss_sum += loss.detach()
        steps, images = steps + 1, images + len(x) * run.procs.world
        if i % PROGRESS_EVERY == 0 or i + 1 == len(run.train_loader):
            setup.check_finite(loss_sum, epoch, i)
            elapsed = time.perf_counter() - started
            rate, value, now = images / max(elapsed, 1e-9), loss.item(), setup.lr(run.optimizer)
            run.display.update(i + 1, value, now, rate)
            if run.trackers is not None:
                run.trackers.scalars(
                    {"train/loss": value, "train/lr": now, "train/images_per_s": rate},
                    run.progress.updates,
                )
    mean_loss = distributed.sum_across([loss_sum.item(), steps], run.procs)
    setup.check_finite(torch.tensor(mean_loss[0]), epoch, len(run.train_loader))
    elapsed = time.perf_counter() - started
    run.progress.train_time += elapsed
    run.progress.images_seen += images
    return {
        "train_loss": mean_loss[0] / max(mean_loss[1], 1),
        "lr": setup.lr(run.optimizer),
        "global_batch": run.recipe.batch_size,
        "images_per_s": images / elapsed,
        "epoch_time_s": elapsed,
        "skipped": int(distributed.sum_across([skipped], run.procs)[0]),
    }


def _check_sigterm(run: Run, i: int) -> None:
    """Abandon the epoch once SIGTERM arrived (all processes together, checked every few
    steps so that they leave at the same step and no collective is left waiting)."""
    if run.procs.world == 1:
        stop = run.stop.now
    elif i % PROGRESS_EVERY == 0:
        stop = distributed.any_across(run.stop.now, run.procs)
    else:
        return
    if stop:
        raise _Abandoned


# ----------------------------------------------------------------------------------------
# Saving, resuming, starting over


def _save_epoch(run: Run, epoch: int, summary: dict[str, Any]) -> None:
    """Track the best epoch; then last.pt first and the log second (rank 0 only)."""
    for prefix in ("", "ema_"):
        top1 = summary.get(f"{prefix}top1")
        if top1 is not None and top1 > run.progress.best.get(f"{prefix}top1", -1.0):
            run.progress.best.update(
                {
                    f"{prefix}top1": top1,
                    f"{prefix}top5": summary[f"{prefix}top5"],
                    f"{prefix}epoch": epoch + 1,
                }
            )
    line = {**summary, "synthetic": True} if run.data.source.synthetic else summary
    run.progress.history.append(line)
    run.progress.epochs_done = epoch + 1
    if run.procs.primary:
        ema = run.ema.module if run.ema is not None else None
        state = checkpoint.state_of(
            checkpoint.identity(run.selection, run.spec, run.recipe, run.data, run.options.seed),
            run.progress,
            run.model,
            ema,
            run.optimizer,
            run.scaler,
        )
        checkpoint.save(state, run.folder / store.CHECKPOINT)
        store.write_log(run.folder / store.LOG, run.progress.history)


# ----------------------------------------------------------------------------------------
# The record


def _finish(run: Run) -> RunRecord:
    """Write spec, recipe and finally metrics.json (rank 0), with the last epoch's scores
    (scored again when this process resumed after that epoch)."""
    scores = run.final_scores or _score(run, final=True)
    record = _record(run, scores)
    if run.procs.primary:
        run.spec.save(run.folder / "spec.yaml")
        files.write_text(run.folder / store.RECIPE, run.recipe.to_yaml())
        store.write_record(run.folder, record)
        run.display.note(f"record written to {run.folder / store.METRICS}")
    if run.trackers is not None:
        run.trackers.finish(record.to_dict(), run.progress.updates)
    return record


def _record(run: Run, scores: dict[str, Any]) -> RunRecord:
    counts = count(run.model, run.recipe.img_size)
    contention = run.watch.stop() if run.watch else None
    if contention is not None and host.is_busy(contention):
        run.display.note(
            f"warning: the machine was busy while training ({host.busy_note(contention)}): "
            "train time and images/s are not clean figures"
        )
    ema = {}
    if run.ema is not None:
        ema = {
            "ema_top1": scores["ema_top1"],
            "ema_top5": scores["ema_top5"],
            "best_ema_top1": run.progress.best.get("ema_top1"),
            "best_ema_top5": run.progress.best.get("ema_top5"),
        }
    return RunRecord(
        data=run.data.source.slug,
        synthetic=run.data.source.synthetic,
        recipe=run.key.recipe,
        name=run.key.name,
        seed=run.options.seed,
        steps=list(run.selection.steps),
        spec_hash=spec_hash(run.spec),
        recipe_hash=recipe_hash(run.recipe),
        num_classes=run.data.num_classes,
        top1=scores["train_top1"],
        top5=scores["train_top5"],
        best_top1=run.progress.best["top1"],
        best_top5=run.progress.best["top5"],
        best_epoch=run.progress.best["epoch"],
        fused_top1=scores["top1"],
        fused_top5=scores["top5"],
        fused_disagreements=scores["train_disagreements"],
        val_images=scores["images"],
        params=counts.params,
        macs=counts.macs,
        deploy_params=counts.deploy_params,
        deploy_macs=counts.deploy_macs,
        img_size=counts.img_size,
        epochs=run.recipe.epochs,
        train_time_s=run.progress.train_time,
        images_per_s=run.progress.images_seen / max(run.progress.train_time, 1e-9),
        skipped_images=run.progress.skipped + len(run.data.left_out),
        skipped_files=run.data.left_out or None,
        lr=lr_rule(run.recipe, run.procs.world),
        environment=Environment.here(
            run.procs.device,
            run.procs.world,
            workers(run.options, run.data),
            run.amp_dtype,
            run.options.channels_last,
            run.options.compile,
            fused_optimizer=bool(run.optimizer.defaults.get("fused")),
            jobs=run.options.jobs,
        ),
        command=run.options.command
        or equivalent_command(run.selection, run.data.source, run.recipe, run.options.seed),
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        init=run.started_from.to_dict() if run.started_from else None,
        train_images=len(run.data.train),
        contention=dataclasses.asdict(contention) if contention else None,
        distillation=run.teacher.describe(run.recipe) if run.teacher else None,
        **ema,
    )
