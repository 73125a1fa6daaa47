"""Every command-line option, defined once, and the option groups commands share.

An option used by several commands is an ``Annotated`` alias here (one help text, one set of
bounds). Options that belong together (which network, which recipe, how to run) are *groups*:
a function whose parameters are the options and whose return value is what the library wants
(a :class:`~roadmap.arch.selection.Selection`, a :class:`~roadmap.train.recipe.Recipe`,
...). A command asks for a group with :func:`uses`, which shows typer the group's options in
the command's signature and hands the command the built value.

Choices (devices, backends, formats) are listed here as enums so that ``--help`` needs no
torch import; a test checks that they equal the library's own lists.
"""

import functools
import inspect
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from roadmap.arch.spec import MAX_CLASSES
from roadmap.errors import RoadmapError
from roadmap.train.recipe import builtin_recipes

# Large enough for any classification or detection input; small enough that a typo (100000)
# ends here instead of in the allocator.
MAX_IMG_SIZE = 4096
MAX_BATCH = 4096


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


class Backend(str, Enum):
    eager = "eager"
    torchscript = "torchscript"
    compile = "compile"
    onnxruntime = "onnxruntime"
    executorch = "executorch"


class ExportFormat(str, Enum):
    onnx = "onnx"
    torchscript = "torchscript"
    executorch = "executorch"
    coreml = "coreml"


class Format(str, Enum):
    table = "table"
    json = "json"


class TableFormat(str, Enum):
    rich = "rich"
    markdown = "markdown"
    csv = "csv"
    json = "json"
    latex = "latex"


class BadImages(str, Enum):
    error = "error"
    skip = "skip"


class Tracker(str, Enum):
    tensorboard = "tensorboard"
    wandb = "wandb"
    mlflow = "mlflow"


class Distillation(str, Enum):
    none = "none"
    hard = "hard"
    soft = "soft"


# --- single options -------------------------------------------------------------------------

UptoOpt = Annotated[
    str | None, typer.Option("--upto", help="Apply the roadmap up to and including this step.")
]
StepsOpt = Annotated[
    str | None,
    typer.Option(
        "--steps", help="Comma-separated steps to apply, in this order (an ablation, or on --spec)."
    ),
]
SkipOpt = Annotated[str | None, typer.Option("--skip", help="Comma-separated steps to leave out.")]
SpecOpt = Annotated[
    Path | None,
    typer.Option(
        "--spec",
        help="Start from this spec file (.yaml/.json, e.g. from build --save-spec); "
        "--steps then apply on top of it.",
    ),
]
SizeOpt = Annotated[
    str | None,
    typer.Option(
        "--size",
        help="Scale the network: a RepViT family member (m0_6, m0_9, m1_0, m1_1, m1_5, m2_3) "
        "or width/depth multipliers such as w1.25d1.5.",
    ),
]
NumClassesOpt = Annotated[
    int, typer.Option("--num-classes", min=1, max=MAX_CLASSES, help="Number of output classes.")
]
ImgSizeOpt = Annotated[
    int,
    typer.Option(
        "--img-size", min=32, max=MAX_IMG_SIZE, help="Input resolution in pixels (square)."
    ),
]
BatchOpt = Annotated[
    int, typer.Option("--batch", min=1, max=MAX_BATCH, help="Images per forward pass.")
]
DeviceOpt = Annotated[Device, typer.Option("--device", help="Where to run.")]
ThreadsOpt = Annotated[
    int | None,
    typer.Option("--threads", min=1, help="CPU threads (default: what torch uses now)."),
]
WarmupOpt = Annotated[
    int, typer.Option("--warmup", min=0, help="Untimed iterations per model first.")
]
BackendOpt = Annotated[
    Backend,
    typer.Option(
        "--backend",
        help="What runs the model: torch eager, TorchScript, torch.compile, ONNX Runtime, or "
        'ExecuTorch with XNNPACK (the phone runtime; pip install -e ".[mobile]").',
    ),
]
FormatOpt = Annotated[Format, typer.Option("--format", help="Output format.")]
Int8Opt = Annotated[
    bool,
    typer.Option(
        "--int8",
        help="With ExecuTorch: the program quantized to int8 (PT2E, XNNPACK's quantizer, "
        "per-channel weights), the form phones run.",
    ),
]
TableFormatOpt = Annotated[TableFormat, typer.Option("--format", help="Output format.")]
# The results store's root has one name everywhere: --results (train and run also take --out,
# its name before 0.3).
RESULTS_HELP = "Root of the results store: where runs are filed and read from."
ResultsOpt = Annotated[Path, typer.Option("--results", help=RESULTS_HELP)]
ItersOpt = Annotated[
    int, typer.Option("--iters", min=1, help="Timed latency iterations per network.")
]
OutFileOpt = Annotated[Path | None, typer.Option("--out", help="Also write the output here.")]


def checked_data(value: str | None) -> str | None:
    """Read ``--data`` as it is parsed, so a typo is one line before anything heavy loads."""
    from roadmap.train.sources import parse_source  # light: no torch

    if value is not None:
        try:
            parse_source(value)
        except RoadmapError as e:
            raise typer.BadParameter(str(e)) from None
    return value


def checked_roadmap(value: str) -> str:
    """Read ``--roadmap`` as it is parsed (it is eager: the step names after it are its)."""
    from roadmap.arch.roadmaps import get_roadmap

    try:
        return get_roadmap(value).name
    except RoadmapError as e:
        raise typer.BadParameter(str(e)) from None


RoadmapOpt = Annotated[
    str,
    typer.Option(
        "--roadmap",
        is_eager=True,
        callback=checked_roadmap,
        help="Whose steps: repvit (MobileNetV3-L -> RepViT-M0.9), convnext (ResNet-50 -> "
        "ConvNeXt-T), or a plugin's (`roadmap roadmaps` lists them).",
    ),
]


def checked_step(ctx: typer.Context, value: str) -> str:
    """Read a step name as it is parsed, in the ``--roadmap`` already read (light: the
    registry loads no torch)."""
    from roadmap.arch import registry
    from roadmap.arch.roadmaps import DEFAULT

    try:
        return registry.get_step(value, ctx.params.get("roadmap", DEFAULT)).name
    except RoadmapError as e:
        raise typer.BadParameter(str(e)) from None


DataOpt = Annotated[
    str,
    typer.Option(
        "--data",
        callback=checked_data,
        help="digits (bundled, no download) | imagefolder:PATH (PATH/train, PATH/val) | "
        "cifar10[:ROOT] | cifar100[:ROOT] | synthetic[:N] (random tensors, throughput only).",
    ),
]
StoreRecipeOpt = Annotated[
    str | None,
    typer.Option("--recipe", help="Recipe label whose trained results to show [default: quick]."),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=0,
        help="Data-loader workers per process (default: 0 for digits and synthetic, else 8).",
    ),
]
DownloadOpt = Annotated[
    bool,
    typer.Option(
        "--download", help="Allow CIFAR and Fashion-MNIST to download (nothing else ever does)."
    ),
]
BadImagesOpt = Annotated[
    BadImages,
    typer.Option("--bad-images", help="An undecodable image: error (stop) or skip (count)."),
]
PretrainedOpt = Annotated[
    bool,
    typer.Option(
        "--pretrained",
        help="Start from timm's ImageNet weights (first step, last step or a --size family "
        "member); downloaded through timm's cache only when you pass this.",
    ),
]
PretrainedFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--pretrained-file",
        help="With --pretrained: read timm's weights from this local file (timm's key names).",
    ),
]
LeaveOneOutOpt = Annotated[
    bool, typer.Option("--leave-one-out", help="The final model with each step left out.")
]
OnlyOneOpt = Annotated[
    bool, typer.Option("--only-one", help="The baseline with each step applied alone.")
]


def split_names(value: str | None) -> list[str] | None:
    """``"a, b"`` -> ``["a", "b"]``; None stays None."""
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise RoadmapError("an empty step list was given")
    return names


# --- option groups ----------------------------------------------------------------------------


def select(
    upto: UptoOpt = None,
    steps: StepsOpt = None,
    skip: SkipOpt = None,
    spec: SpecOpt = None,
    size: SizeOpt = None,
    roadmap: RoadmapOpt = "repvit",
) -> Any:
    """Which network (a ``Selection``)."""
    from roadmap.arch.selection import Selection

    names, left_out = split_names(steps), split_names(skip) or ()
    return Selection.of(upto, names, left_out, spec, size, roadmap=roadmap)


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
    lr: Annotated[
        float | None,
        typer.Option(
            "--lr", help="Override the base lr; the peak lr is base x global batch / 512."
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
            help="Distil from this timm model (RepViT's: regnety_160); its weights: "
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
        base_lr=lr,
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
        log=tuple(dict.fromkeys(t.value for t in log or ())),
    )


def latency_group(
    latency: Annotated[
        bool,
        typer.Option("--latency/--no-latency", help="Measure the fused latency of every row now."),
    ] = True,
    device: DeviceOpt = Device.cpu,
    iters: ItersOpt = 20,
    backend: BackendOpt = Backend.eager,
) -> Any:
    """Latency settings for the study commands (None with --no-latency)."""
    from roadmap.measure.latency import LatencySettings

    if not latency:
        return None
    return LatencySettings(device=device.value, iters=iters, warmup=3, backend=backend.value)


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
    device: DeviceOpt = Device.cpu, iters: ItersOpt = 30, backend: BackendOpt = Backend.eager
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


# --- small helpers the commands share -------------------------------------------------------


# A seed seeds torch, Python and NumPy; NumPy's take 0 <= seed < 2**32.
MAX_SEED = 2**32 - 1


def seeds(value: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> (0, 1, 2): distinct seeds from 0 to MAX_SEED."""
    try:
        parsed = tuple(int(seed) for seed in value.split(",") if seed.strip())
    except ValueError:
        raise RoadmapError(f"--seeds takes comma-separated whole numbers, got {value!r}") from None
    if not parsed:
        raise RoadmapError("--seeds needs at least one seed")
    bad = [s for s in parsed if not 0 <= s <= MAX_SEED]
    if bad:
        raise RoadmapError(f"--seeds: a seed is a whole number from 0 to {MAX_SEED}, got {bad[0]}")
    twice = sorted({s for s in parsed if parsed.count(s) > 1})
    if twice:
        raise RoadmapError(f"--seeds: seed {twice[0]} is listed twice (each trains once)")
    return parsed


def write_out(path: Path, text: str) -> None:
    """Write a command's output file atomically."""
    from roadmap.util import files

    files.write_text(path, text + "\n")
