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
from roadmap.train.recipe import MAX_BATCH, MAX_IMG_SIZE
from roadmap.train.sources import data_help, data_kinds


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


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


def size_help() -> str:
    """``--size``'s help: every installed roadmap's family, from the registry."""
    from roadmap.arch.roadmaps import get_roadmap, roadmap_names

    try:
        found = [get_roadmap(name) for name in roadmap_names()]
    except RoadmapError:  # a broken package: its own command says so; help still works
        found = []
    families = "; ".join(
        f"{r.name}: {', '.join(s.label for s in r.family)}" for r in found if r.family
    )
    return (
        f"Scale the network: a member of the roadmap's family ({families}) or width/depth "
        "multipliers such as w1.25d1.5."
    )


SizeOpt = Annotated[
    str | None,
    typer.Option(
        "--size",
        help=size_help(),
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


def checked_backend(value: str) -> str:
    """Read ``--backend`` against the registered runtimes (a ``--plugin``'s included)."""
    from roadmap.measure import runtimes

    if value not in runtimes.backends():
        try:
            runtimes.get_runtime(value)  # unknown: the registry's one line, with did-you-mean
        except RoadmapError as e:
            raise typer.BadParameter(str(e)) from None
        raise typer.BadParameter(f"{value} cannot be timed here; it exports only")
    return value


def backend_help() -> str:
    """``--backend``'s help: every runtime latency can time, from the registry."""
    from roadmap.measure import runtimes

    timed = [runtimes.get_runtime(name) for name in runtimes.backends()]
    listed = "; ".join(f"{r.name} ({r.title})" for r in timed)
    return f"What runs the model: {listed}. `roadmap runtimes` lists them, plugins' too."


def format_help() -> str:
    """``export --format``'s help: every runtime's file format, from the registry."""
    from roadmap.measure import runtimes

    writes = [runtimes.for_format(fmt) for fmt in runtimes.formats()]
    listed = "; ".join(f"{r.format} ({r.suffix}, {r.title})" for r in writes)
    return f"File format: {listed}."


def checked_format(value: str) -> str:
    """Read ``export --format`` against the registered runtimes' formats."""
    from roadmap.measure import runtimes

    try:
        return runtimes.for_format(value).format
    except RoadmapError as e:
        raise typer.BadParameter(str(e)) from None


BackendOpt = Annotated[
    str,
    typer.Option("--backend", metavar="NAME", callback=checked_backend, help=backend_help()),
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
        help="Whose steps: an installed roadmap's name (`roadmap roadmaps` lists them: the "
        "built-in repvit, convnext and visformer, and any package's or --plugin's).",
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
        help=data_help(),
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
        help="Data-loader workers per process (default: 0 for sources held in memory: "
        f"{', '.join(k.name for k in data_kinds() if k.in_memory)}; else min(8, cores)).",
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
