"""Commands that train and evaluate: train, eval, run.

Multi-GPU: ``torchrun --nproc_per_node=N -m roadmap train ...`` (only rank 0 prints).
"""

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from roadmap.cli.app import command, console, note_line
from roadmap.cli.options import (
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
    WorkersOpt,
    recipe_group,
    run_group,
    seeds,
    select,
    uses,
)
from roadmap.errors import RoadmapError


@command("train")
@uses(network=select, recipe=recipe_group, options=run_group)
def train_cmd(
    network: Any,
    data: DataOpt = "digits",
    recipe: Any = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of init, data order, augmentation.")
    ] = 0,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the run folder's last.pt.")
    ] = False,
    options: Any = None,
) -> None:
    """Train one network; its record goes to results/<data>/<recipe>/<network>/seed<k>/.

    Ctrl-C: finish the epoch, save last.pt, stop (exit 130). SIGTERM: stop now (exit 143).

    Either way last.pt holds the last finished epoch, and --resume continues from it.
    """
    from roadmap import report
    from roadmap.options import is_primary_process
    from roadmap.train import train

    options = dataclasses.replace(options, seed=seed, resume=resume)
    record = train(network, data, recipe, options)
    if is_primary_process():
        console.print(report.record_table(record))


@command("eval")
@uses(network=select)
def eval_cmd(
    checkpoint: Annotated[
        Path, typer.Option("--checkpoint", help="A last.pt written by roadmap train.")
    ],
    network: Any = None,
    data: DataOpt = "digits",
    ema: Annotated[bool, typer.Option("--ema", help="Score the EMA weights.")] = False,
    workers: WorkersOpt = None,
    device: DeviceOpt = Device.cpu,
    download: DownloadOpt = False,
    bad_images: BadImagesOpt = BadImages.error,
    fmt: FormatOpt = Format.table,
) -> None:
    """Top-1/top-5 of a checkpoint in its training form and its fused form (they must agree)."""
    from roadmap import report
    from roadmap.evaluate import evaluate_checkpoint
    from roadmap.options import RunOptions

    options = RunOptions(
        workers=workers, device=device.value, download=download, bad_images=bad_images.value
    )
    scores = evaluate_checkpoint(network, checkpoint, data, options, use_ema=ema)
    if fmt is Format.json:
        print(json.dumps(scores.to_dict(), indent=2))
    else:
        console.print(report.eval_table(scores))


@command("run")
@uses(network=select, recipe=recipe_group, options=run_group)
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
) -> None:
    """Train every prefix of the selected network (each step of the roadmap, by default) for
    each seed; what the store already has is skipped, and an interrupted run resumes."""
    from roadmap import report, selection
    from roadmap.options import is_primary_process
    from roadmap.sweep import sweep

    if leave_one_out and only_one:
        raise RoadmapError("choose one of --leave-one-out or --only-one")
    ablation = "leave_one_out" if leave_one_out else "only_one" if only_one else None
    variants = selection.plan(network, ablation)
    for v in variants:
        if not v.buildable and is_primary_process():
            note_line(f"not trained, cannot be built: {v.name}: {v.reason}")
    chosen = [v.selection for v in variants if v.buildable]
    outcomes = sweep(chosen, data, recipe, seeds=seeds(seeds_text), options=options)
    if is_primary_process():
        console.print(report.sweep_table(outcomes))
