"""The option groups commands share: options that belong together (which network, which
recipe, how to run, how to time) as one function whose parameters are the options and whose
return value is what the library wants (a :class:`~roadmap.arch.selection.Selection`, a
:class:`~roadmap.train.recipe.Recipe`, ...). A command asks for a group with :func:`uses`,
which shows typer the group's options in the command's signature and hands the command the
built value.
"""

import functools
import inspect
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from roadmap.cli.options import (
    DEFAULT_ROADMAP,
    MAX_BATCH,
    MAX_IMG_SIZE,
    RESULTS_HELP,
    BackendOpt,
    BadImages,
    BadImagesOpt,
    Device,
    DeviceOpt,
    Distillation,
    DownloadOpt,
    ItersOpt,
    RoadmapOpt,
    SizeOpt,
    SkipOpt,
    SpecOpt,
    StepsOpt,
    Tracker,
    UptoOpt,
    WorkersOpt,
    split_names,
)
from roadmap.train.recipe import builtin_recipes


def select(
    upto: UptoOpt = None,
    steps: StepsOpt = None,
    skip: SkipOpt = None,
    spec: SpecOpt = None,
    size: SizeOpt = None,
    roadmap: RoadmapOpt = DEFAULT_ROADMAP,
) -> Any:
    """Which network (a ``Selection``)."""
    from roadmap.arch.selection import Selection

    names, left_out = split_names(steps), split_names(skip) or ()
    return Selection.of(roadmap, upto, names, left_out, spec, size)


def recipe_group(
    recipe: Annotated[
        str,
        typer.Option(
            "--recipe",
            help=f"A shipped recipe ({', '.join(builtin_recipes())}) or a recipe YAML file.",
        ),
    ] = "quick",
    epochs: Annotated[
        int | None, typer.Option("--epochs", min=1, help="Override the recipe's epochs.")
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size", min=1, max=MAX_BATCH, help="Override the global batch (all processes)."
        ),
    ] = None,
    base_lr: Annotated[
        float | None,
        typer.Option(
            "--base-lr",
            "--lr",
            help="Override the recipe's base_lr, the rate at a global batch of 512; the peak "
            "rate the optimizer reaches is base_lr x global batch / 512 (--lr: its 0.2 name).",
        ),
    ] = None,
    img_size: Annotated[
        int | None,
        typer.Option(
            "--img-size", min=32, max=MAX_IMG_SIZE, help="Override the recipe's resolution (px)."
        ),
    ] = None,
    teacher: Annotated[
        str | None,
        typer.Option(
            "--teacher",
            help="Distil from this timm model (RepViT's: regnety_160); needs --distillation "
            "hard or soft (alone it is refused: it would change nothing); its weights: "
            "--teacher-pretrained or --teacher-checkpoint.",
        ),
    ] = None,
    distillation: Annotated[
        Distillation | None,
        typer.Option(
            "--distillation",
            help="DeiT's knowledge distillation through a second classifier head: hard (the "
            "teacher's top class; the official RepViT training's), soft, or none.",
        ),
    ] = None,
    distillation_alpha: Annotated[
        float | None,
        typer.Option(
            "--distillation-alpha",
            min=0.0,
            max=1.0,
            help="Weight of the distillation loss (the label loss gets 1 - alpha); official: 0.5.",
        ),
    ] = None,
    distillation_tau: Annotated[
        float | None,
        typer.Option(
            "--distillation-tau",
            help="Temperature of soft distillation (above 0); official: 1.0.",
        ),
    ] = None,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="Set any recipe key (repeatable), the value in YAML: --set mixup=0.2 --set "
            "clip_grad=null --set 'scale=[0.5, 1]'. A shipped recipe changed this way is filed "
            "under its name and hash (quick-1a2b3c4d5e6f); `roadmap recipes` lists the keys.",
        ),
    ] = None,
) -> Any:
    """How to train (a ``Recipe``), with command-line overrides."""
    from roadmap.train.recipe import load_recipe

    return load_recipe(
        recipe,
        settings=settings or (),
        epochs=epochs,
        batch_size=batch_size,
        base_lr=base_lr,
        img_size=img_size,
        teacher=teacher,
        distillation=distillation.value if distillation else None,
        distillation_alpha=distillation_alpha,
        distillation_tau=distillation_tau,
    )


def run_group(
    workers: WorkersOpt = None,
    device: DeviceOpt = Device.cpu,
    amp: Annotated[
        bool, typer.Option("--amp", help="Mixed precision (bfloat16, else float16).")
    ] = False,
    channels_last: Annotated[
        bool | None,
        typer.Option(
            "--channels-last/--contiguous",
            help="Memory format of model and inputs: NHWC (channels_last) or NCHW. Default: "
            "channels_last on CPU (1.3-1.6x faster training there, benchmarks/train_cpu.py), "
            "contiguous on CUDA.",
            show_default=False,
        ),
    ] = None,
    compile: Annotated[
        bool, typer.Option("--compile", help="torch.compile the training model.")
    ] = False,
    results: Annotated[
        Path, typer.Option("--results", "--out", help=RESULTS_HELP + " (--out: its 0.2 name)")
    ] = Path("results"),
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars or notes.")] = False,
    download: DownloadOpt = False,
    bad_images: BadImagesOpt = BadImages.error,
    teacher_pretrained: Annotated[
        bool,
        typer.Option(
            "--teacher-pretrained",
            help="The distillation teacher starts from timm's published weights (downloaded "
            "through timm's cache; the only download besides --pretrained).",
        ),
    ] = False,
    teacher_checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--teacher-checkpoint",
            help="The teacher's weights from this file (a timm or `roadmap train` state dict "
            "of that model, for this data's classes).",
        ),
    ] = None,
    log: Annotated[
        list[Tracker] | None,
        typer.Option(
            "--log",
            help="Also write the run's curves to an experiment tracker (repeatable): "
            "tensorboard (event files in the run folder: tensorboard --logdir results/), "
            "wandb, mlflow. The JSON record stays the source of truth.",
        ),
    ] = None,
) -> Any:
    """How to run (``RunOptions``; the seed and --resume are the command's own)."""
    from roadmap.train import tracking  # light: a missing client is said before torch loads

    logs = tuple(dict.fromkeys(t.value for t in log or ()))
    tracking.check_available(logs)
    from roadmap.train.run_options import RunOptions, launch_command

    return RunOptions(
        workers=workers,
        device=device.value,
        amp=amp,
        channels_last=channels_last,
        compile=compile,
        quiet=quiet,
        download=download,
        bad_images=bad_images.value,
        results=results,
        command=launch_command(sys.argv[1:]),
        teacher_pretrained=teacher_pretrained,
        teacher_checkpoint=teacher_checkpoint,
        log=logs,
    )


def latency_group(
    latency: Annotated[
        bool,
        typer.Option("--latency/--no-latency", help="Measure the fused latency of every row now."),
    ] = True,
    device: DeviceOpt = Device.cpu,
    iters: ItersOpt = 20,
    backend: BackendOpt = "eager",
) -> Any:
    """Latency settings for the study commands (None with --no-latency)."""
    from roadmap.measure.latency import LatencySettings

    if not latency:
        return None
    return LatencySettings(device=device.value, iters=iters, warmup=3, backend=backend)


class Launcher(str, Enum):
    none = "none"
    local = "local"
    slurm = "slurm"


def cluster_group(
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            help="Train only part K of N of the plan (K/N, 0-based), e.g. "
            "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT.",
        ),
    ] = None,
    launcher: Annotated[
        Launcher,
        typer.Option(
            "--launcher",
            help="none: train here; slurm: one SLURM job per (network, seed) via submitit; "
            "local: the same jobs through submitit's local executor.",
        ),
    ] = Launcher.none,
    partition: Annotated[
        str | None, typer.Option("--partition", help="SLURM partition (--launcher slurm).")
    ] = None,
    nodes: Annotated[int, typer.Option("--nodes", min=1, help="Nodes per job.")] = 1,
    gpus_per_node: Annotated[
        int, typer.Option("--gpus-per-node", min=0, help="GPUs per node, one process each.")
    ] = 0,
    time: Annotated[
        str, typer.Option("--time", help="Time limit per job, HH:MM:SS (jobs requeue on it).")
    ] = "48:00:00",
    array_parallelism: Annotated[
        int, typer.Option("--array-parallelism", min=1, help="At most this many jobs at once.")
    ] = 64,
    jobs_dir: Annotated[
        Path, typer.Option("--jobs-dir", help="submitit's folder for job scripts and logs.")
    ] = Path("results/jobs"),
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            help="Train this many runs at once here, in worker processes that share the torch "
            "threads (CPU; each takes the next run nobody has; 1: one at a time, with per-epoch "
            "bars). Default: 2 on CPU for a plan of 2+ runs when torch has 2+ threads, else 1.",
        ),
    ] = None,
) -> Any:
    """Where the runs of a study go (``roadmap.study.cluster``): (shard, ClusterOptions)."""
    from roadmap.study.cluster import ClusterOptions, parse_shard

    cluster = ClusterOptions(
        launcher=launcher.value,
        jobs_dir=jobs_dir,
        partition=partition,
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        time=time,
        array_parallelism=array_parallelism,
        jobs=jobs,
    )
    return (parse_shard(shard) if shard else None), cluster


def plot_timing_group(
    device: DeviceOpt = Device.cpu, iters: ItersOpt = 30, backend: BackendOpt = "eager"
) -> Any:
    """Latency settings for the plot, which always measures (latency is its x axis)."""
    return latency_group(latency=True, device=device, iters=iters, backend=backend)


def uses(**groups: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command option groups: ``@uses(network=select)`` replaces its ``network``
    parameter by ``select``'s options in what typer sees, and passes ``select(...)`` in."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        own = inspect.signature(command).parameters.values()
        members = {name: inspect.signature(group).parameters for name, group in groups.items()}
        params = []
        for p in own:
            params += list(members[p.name].values()) if p.name in groups else [p]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            for name, group in groups.items():
                kwargs[name] = group(**{key: kwargs.pop(key) for key in members[name]})
            return command(**kwargs)

        wrapper.__signature__ = inspect.Signature(params)
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate
