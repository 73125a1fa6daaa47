"""Commands that train and evaluate: train, eval, run.

Multi-GPU: ``torchrun --nproc_per_node=N -m roadmap train ...`` (only rank 0 prints).
"""

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from roadmap.cli.app import command, console, note_line, show, working
from roadmap.cli.groups import cluster_group, recipe_group, run_group, select, uses
from roadmap.cli.options import (
    MAX_SEED,
    BadImages,
    BadImagesOpt,
    DataOpt,
    Device,
    DeviceOpt,
    DownloadOpt,
    Format,
    FormatOpt,
    LeaveOneOutOpt,
    OnlyOneOpt,
    PretrainedFileOpt,
    PretrainedOpt,
    WorkersOpt,
    seeds,
)
from roadmap.errors import RoadmapError


@command("train")
@uses(network=select, recipe=recipe_group, options=run_group)
def train_cmd(
    network: Any,
    data: DataOpt = "digits",
    recipe: Any = None,
    seed: Annotated[
        int,
        typer.Option("--seed", min=0, max=MAX_SEED, help="Seed of init, data order, augmentation."),
    ] = 0,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the run folder's last.pt.")
    ] = False,
    retrain: Annotated[
        bool,
        typer.Option(
            "--retrain",
            help="Train again a run the store already holds finished (its record is set aside "
            "as seed<k>.old-*, checkpoint and all; without this the run is refused).",
        ),
    ] = False,
    pretrained: PretrainedOpt = False,
    pretrained_file: PretrainedFileOpt = None,
    init: Annotated[
        Path | None,
        typer.Option(
            "--init",
            help="Start from this state dict (a last.pt, or a roadmap_* timm model's weights): "
            "tensors whose name and shape match are loaded; the record lists the rest.",
        ),
    ] = None,
    options: Any = None,
) -> None:
    """Train one network; its record goes to results/<data>/<recipe>/<network>/seed<k>/.

    Ctrl-C: finish the epoch, save last.pt, stop (exit 130). SIGTERM: stop now (exit 143).

    Either way last.pt holds the last finished epoch, and --resume continues from it.
    """
    from roadmap.report import training
    from roadmap.train.interrupt import graceful_stop
    from roadmap.train.loop import train
    from roadmap.train.run_options import is_primary_process

    if pretrained and init is not None:
        raise RoadmapError("give --pretrained or --init, not both")
    if pretrained_file is not None and not pretrained:
        raise RoadmapError("--pretrained-file goes with --pretrained")
    options = dataclasses.replace(
        options,
        seed=seed,
        resume=resume,
        retrain=retrain,
        pretrained=pretrained,
        pretrained_file=str(pretrained_file) if pretrained_file else None,
        init=init,
    )
    with graceful_stop():  # Ctrl-C finishes the epoch, SIGTERM keeps the last one
        record = train(network, data, recipe, options)
    if is_primary_process():
        show(training.record_table(record))
        note_line(training.stored_text(record, options.results))


@command("eval")
@uses(network=select)
def eval_cmd(
    network: Any,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="A last.pt written by roadmap train.")
    ] = None,
    pretrained: PretrainedOpt = False,
    pretrained_file: PretrainedFileOpt = None,
    data: DataOpt = "digits",
    ema: Annotated[bool, typer.Option("--ema", help="Score the EMA weights.")] = False,
    workers: WorkersOpt = None,
    device: DeviceOpt = Device.cpu,
    download: DownloadOpt = False,
    bad_images: BadImagesOpt = BadImages.error,
    fmt: FormatOpt = Format.table,
    int8: Annotated[
        bool,
        typer.Option(
            "--int8",
            help="Also score the checkpoint's int8 ExecuTorch program (PT2E, XNNPACK's "
            "quantizer) beside its float32 deploy form, image by image: Δ top-1 with a 95 % "
            "interval; a run's last.pt gets it added to its record (for table --int8). "
            'Needs pip install -e ".[mobile]".',
        ),
    ] = False,
    calibration_images: Annotated[
        int,
        typer.Option(
            "--calibration-images",
            min=1,
            help="With --int8: training images (evaluation transform) the activation ranges "
            "are calibrated on.",
        ),
    ] = 512,
) -> None:
    """Top-1/top-5 of a checkpoint (or of timm's weights, --pretrained) in its training form
    and its fused form (they must agree); with --int8, its int8 program's too."""
    from roadmap.report import training
    from roadmap.train.evaluate import evaluate_checkpoint, evaluate_pretrained
    from roadmap.train.run_options import RunOptions

    if (checkpoint is None) == (not pretrained):
        raise RoadmapError("give --checkpoint PATH or --pretrained (one of them)")
    if int8 and checkpoint is None:
        raise RoadmapError("--int8 scores a trained checkpoint: give --checkpoint PATH")
    options = RunOptions(
        workers=workers,
        device=device.value,
        download=download,
        bad_images=bad_images.value,
        pretrained_file=str(pretrained_file) if pretrained_file else None,
    )
    quantized = stored = None
    if int8:  # first: it refuses what it cannot do (no ExecuTorch, a GPU) before any work
        from roadmap.train.int8 import evaluate_int8, store_in_record

        with working(f"quantizing {network.name} to int8, scoring both forms"):
            quantized = evaluate_int8(
                network, checkpoint, data, options, use_ema=ema, calibration=calibration_images
            )
        stored = store_in_record(quantized, checkpoint)
    if pretrained:
        scores = evaluate_pretrained(network, data, options)
    else:
        scores = evaluate_checkpoint(network, checkpoint, data, options, use_ema=ema)
    if fmt is Format.json:
        out = scores.to_dict()
        if quantized is not None:
            out["int8"] = {**quantized.to_dict(), **training.int8_summary(quantized)}
        print(json.dumps(out, indent=2))
    else:
        show(training.eval_table(scores))
        if quantized is not None:
            show(training.int8_table(quantized))
            if stored is not None:
                note_line(f"added to the run's record: {stored}")


@command("run")
@uses(network=select, recipe=recipe_group, options=run_group, placement=cluster_group)
def run_cmd(
    network: Any,
    seeds_text: Annotated[
        str, typer.Option("--seeds", help="Comma-separated seeds, e.g. 0,1,2.")
    ] = "0",
    data: DataOpt = "digits",
    recipe: Any = None,
    options: Any = None,
    leave_one_out: LeaveOneOutOpt = False,
    only_one: OnlyOneOpt = False,
    placement: Any = None,
    show_plan: Annotated[
        bool, typer.Option("--plan", help="Print the plan (and each run's shard); train nothing.")
    ] = False,
    show_status: Annotated[
        bool,
        typer.Option(
            "--status", help="Show which runs are done, running, failed or missing; train nothing."
        ),
    ] = False,
) -> None:
    """Train every prefix of the selected network (each step of the roadmap, by default) for
    each seed; what the store already has is skipped, and an interrupted run resumes."""
    from roadmap.report import training
    from roadmap.study import plan
    from roadmap.study.sweep import sweep
    from roadmap.train.interrupt import graceful_stop
    from roadmap.train.run_options import is_primary_process

    if leave_one_out and only_one:
        raise RoadmapError("choose one of --leave-one-out or --only-one")
    ablation = "leave_one_out" if leave_one_out else "only_one" if only_one else None
    variants = plan.variants(network, ablation)
    for v in variants:
        if not v.buildable and is_primary_process():
            note_line(f"not trained, cannot be built: {v.name}: {v.reason}")
    chosen = [v.selection for v in variants if v.buildable]
    seed_list = seeds(seeds_text)
    part, where = placement
    runs = plan.runs(chosen, seed_list)
    if show_plan or show_status:
        _show(runs, part, show_status, data, recipe, options)
        return
    if where.launcher != "none":
        if where.jobs is not None and where.jobs > 1:
            raise RoadmapError(f"--jobs trains here; with --launcher {where.launcher} leave it out")
        _launch(runs if part is None else plan.shard(runs, *part), data, recipe, options, where)
        return
    from roadmap.study import parallel

    planned = runs if part is None else plan.shard(runs, *part)
    jobs = where.jobs if where.jobs is not None else parallel.default_jobs(options, len(planned))
    with graceful_stop():
        if jobs > 1 and len(planned) > 1:
            outcomes = _parallel(chosen, data, recipe, seed_list, options, part, jobs, planned)
        else:
            outcomes = sweep(chosen, data, recipe, seeds=seed_list, options=options, shard=part)
    if is_primary_process():
        show(training.sweep_table(outcomes))
        if len(seed_list) > 1 and part is None:
            for line in _what_next(variants, data, recipe, options):
                note_line(line)


def _parallel(
    chosen: list,
    data: str,
    recipe: Any,
    seed_list: tuple,
    options: Any,
    part: Any,
    jobs: int,
    planned: list,
) -> list:
    """The sweep in worker processes, with one bar over its runs (the workers draw none)."""
    from roadmap.study import parallel
    from roadmap.study.sweep import sweep
    from roadmap.train.progress import SweepDisplay

    workers = min(jobs, len(planned))
    note = (
        f"{workers} runs at a time in worker processes, {parallel.threads_per_job(workers)} "
        "torch thread(s) each (--jobs 1: one at a time, with per-epoch bars)"
    )
    with SweepDisplay(len(planned), enabled=not options.quiet, note=note) as display:
        return sweep(
            chosen,
            data,
            recipe,
            seeds=seed_list,
            options=options,
            shard=part,
            jobs=jobs,
            on_start=display.started,
            on_outcome=display.finished,
        )


def _show(runs: list, part: Any, with_status: bool, data: str, recipe: Any, options: Any) -> None:
    """--plan: the runs and their shards; --status: where each run stands."""
    from roadmap.report import training
    from roadmap.study import cluster
    from roadmap.train.data import load_datasets
    from roadmap.train.sources import parse_source

    states = None
    if with_status:
        classes = load_datasets(parse_source(data), recipe).num_classes
        states = cluster.status(runs, data, recipe, options, classes)
    show(training.plan_table(runs, part, states))


def _launch(runs: list, data: str, recipe: Any, options: Any, where: Any) -> None:
    """Submit the runs as jobs; wait for local ones (they run on this machine)."""
    from roadmap.report import training
    from roadmap.study import cluster

    jobs = cluster.submit(runs, data, recipe, options, where)
    console.print(training.jobs_text(jobs, where))
    if where.launcher == "local":
        outcomes = [job.result() for job in jobs]
        show(training.job_outcomes_table(outcomes))


def _what_next(variants: list, data: str, recipe: Any, options: Any) -> list[str]:
    """After a multi-seed sweep: the accuracy Δs that are not findings yet, and the seeds
    each would need."""
    from roadmap.report import study_table
    from roadmap.study import comparison
    from roadmap.train.identity import run_key
    from roadmap.train.sources import parse_source

    source = parse_source(data)
    label = run_key(source, recipe, variants[0].selection, options).recipe
    study = comparison.collect(
        variants, results=options.results, data=source.slug, recipe=label, paper=False, counts=False
    )
    return study_table.power_lines(study)


@command("recipes")
def recipes_cmd(fmt: FormatOpt = Format.table) -> None:
    """List the shipped recipes, key by key: what `--recipe NAME` trains with, and the keys
    `--set KEY=VALUE` can change."""
    from roadmap.report.training import recipes_table
    from roadmap.train.recipe import builtin_recipes, load_recipe

    found = [load_recipe(name) for name in builtin_recipes()]
    if fmt is Format.json:
        print(json.dumps({r.name: r.to_dict() for r in found}, indent=2))
    else:
        show(recipes_table(found))


@command("sources")
def sources_cmd(fmt: FormatOpt = Format.table) -> None:
    """List the kinds of data `--data` may name: the built-in ones and any package's or
    --plugin's."""
    from roadmap.report import catalogue
    from roadmap.train.sources import data_kinds

    found = data_kinds()
    if fmt is Format.json:
        print(json.dumps(catalogue.sources_data(found), indent=2))
    else:
        show(catalogue.sources_table(found))
