"""Every command-line option, defined once (the groups of them are in
:mod:`roadmap.cli.groups`).

An option used by several commands is an ``Annotated`` alias here (one help text, one set of
bounds).

Choices (devices, backends, formats) are listed here as enums so that ``--help`` needs no
torch import; a test checks that they equal the library's own lists.
"""

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from roadmap.arch.spec import MAX_CLASSES
from roadmap.errors import RoadmapError

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
        help="Scale the network: a member of the roadmap's family (RepViT's m0_6 ... m2_3, "
        "ConvNeXt's t, s, b, l; `roadmap roadmaps` lists each) or width/depth multipliers "
        "such as w1.25d1.5.",
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


# The one place a roadmap is chosen for the user: the command line's default. Everything below
# the command line is handed the Roadmap this resolves to.
DEFAULT_ROADMAP = "repvit"


def checked_roadmap(value: Any) -> Any:
    """Read ``--roadmap`` as it is parsed (it is eager: the step names after it are its) and
    hand the command the :class:`~roadmap.arch.roadmaps.Roadmap` it names."""
    from roadmap.arch.roadmaps import Roadmap, get_roadmap

    if isinstance(value, Roadmap):
        return value
    try:
        return get_roadmap(value)
    except RoadmapError as e:
        raise typer.BadParameter(str(e)) from None


RoadmapOpt = Annotated[
    Any,
    typer.Option(
        "--roadmap",
        is_eager=True,
        callback=checked_roadmap,
        parser=str,
        metavar="NAME",
        help="Whose steps: an installed roadmap's name (`roadmap roadmaps` lists them: repvit, "
        "convnext, and any package's or --plugin's).",
    ),
]


def checked_step(ctx: typer.Context, value: str) -> str:
    """Read a step name as it is parsed, in the ``--roadmap`` already read (light: the
    registry loads no torch)."""
    from roadmap.arch import registry

    roadmap = ctx.params.get("roadmap") or checked_roadmap(DEFAULT_ROADMAP)
    try:
        return registry.get_step(value, roadmap).name
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
