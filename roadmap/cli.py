"""The ``roadmap`` command line: parse, call the library, render. No logic of its own.

Every user-fixable problem arrives here as a :class:`RoadmapError` and leaves as one line on
stderr with exit code 2 (``roadmap --debug ...`` shows the traceback instead).
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from roadmap import registry, report
from roadmap.build import build
from roadmap.errors import RoadmapError
from roadmap.measure import MACS_UNIT, count
from roadmap.spec import diff, spec_hash

console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}


def _error_line(message: str) -> None:
    """Print one ``error:`` line on stderr (the message is text, not rich markup)."""
    # escape: 'pip install -e ".[coreml]"' must not be read as markup
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


class _Group(TyperGroup):
    """Turns RoadmapError and bad options into one line and exit code 2."""

    def invoke(self, ctx):  # noqa: ANN001, ANN201 (click's signature)
        try:
            return super().invoke(ctx)
        except RoadmapError as e:
            if _state["debug"]:
                raise
            _error_line(str(e))
            raise typer.Exit(2) from None

    def main(self, *args, standalone_mode: bool = True, **kwargs):  # noqa: ANN002, ANN003, ANN201
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except Exception as e:  # click's usage errors, duck-typed: typer vendors click privately
            if not hasattr(e, "format_message") or type(e).__name__ == "NoArgsIsHelpError":
                if hasattr(e, "show"):  # no arguments at all: show the help
                    e.show()
                    sys.exit(getattr(e, "exit_code", 2))
                raise
            ctx = getattr(e, "ctx", None)
            where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            _error_line(e.format_message() + where)
            sys.exit(getattr(e, "exit_code", 2))
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=_Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="The RepViT modernization roadmap (MobileNetV3-L -> RepViT-M0.9), step by step.",
)


@app.callback()
def _main(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")
    ] = False,
    plugin: Annotated[
        list[Path] | None,
        typer.Option("--plugin", help="A Python file that registers extra steps (repeatable)."),
    ] = None,
) -> None:
    _state["debug"] = debug
    for path in plugin or []:
        registry.load_plugin(path)


class Format(str, Enum):
    table = "table"
    json = "json"


# --- option types shared by the commands -------------------------------------------------

UptoOpt = Annotated[
    str | None, typer.Option("--upto", help="Apply the roadmap up to and including this step.")
]
StepsOpt = Annotated[
    str | None,
    typer.Option("--steps", help="Comma-separated steps to apply, in this order (an ablation)."),
]
SkipOpt = Annotated[str | None, typer.Option("--skip", help="Comma-separated steps to leave out.")]
NumClassesOpt = Annotated[
    int, typer.Option("--num-classes", min=1, help="Number of output classes.")
]
FormatOpt = Annotated[Format, typer.Option("--format", help="Output format.")]


def split_names(value: str | None) -> list[str] | None:
    """``"a, b"`` -> ``["a", "b"]``; None stays None."""
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise RoadmapError("an empty step list was given")
    return names


def resolve(upto: str | None, steps: str | None, skip: str | None) -> list[str]:
    """The resolved step names for the --upto/--steps/--skip options."""
    return registry.resolve_steps(upto, steps=split_names(steps), skip=split_names(skip) or ())


# --- commands ----------------------------------------------------------------------------


@app.command("steps")
def steps_cmd(fmt: FormatOpt = Format.table) -> None:
    """List the roadmap's steps in order, with the paper's section and numbers."""
    steps = registry.all_steps()
    if fmt is Format.json:
        print(json.dumps(report.steps_data(steps), indent=2))
    else:
        console.print(report.steps_table(steps))


@app.command("build")
def build_cmd(
    upto: UptoOpt = None,
    steps: StepsOpt = None,
    skip: SkipOpt = None,
    num_classes: NumClassesOpt = 1000,
    img_size: Annotated[
        int, typer.Option("--img-size", min=32, help="Resolution at which MACs are counted.")
    ] = 224,
    fmt: FormatOpt = Format.table,
    save_spec: Annotated[
        Path | None, typer.Option("--save-spec", help="Write the spec to this .yaml/.json file.")
    ] = None,
) -> None:
    """Build a prefix or ablation of the roadmap; show its structure, size and last change."""
    names = resolve(upto, steps, skip)
    spec = registry.build_spec(steps=names, num_classes=num_classes)
    previous = (
        registry.build_spec(steps=names[:-1], num_classes=num_classes) if len(names) > 1 else None
    )
    changes = diff(previous, spec) if previous else []
    counts = count(build(spec), img_size)
    if save_spec:
        _write_spec(spec, save_spec)
    if fmt is Format.json:
        print(json.dumps(_build_record(names, spec, counts, changes), indent=2))
        return
    against = f"the network before {names[-1]}" if previous else "nothing (the starting point)"
    console.print(f"[bold]steps:[/] {' -> '.join(names)}   [dim]spec {spec_hash(spec)}[/]")
    console.print(report.spec_tree(spec, report.changed_paths(changes)))
    console.print(report.counts_table(counts))
    console.print(report.changes_text(changes, against))
    if save_spec:
        console.print(f"spec written to {save_spec}")


def _build_record(names: list[str], spec, counts, changes) -> dict:  # noqa: ANN001
    return {
        "steps": names,
        "spec_hash": spec_hash(spec),
        "num_classes": spec.num_classes,
        **counts.to_dict(),
        "macs_unit": MACS_UNIT,
        "changes": [str(c) for c in changes],
        "spec": spec.to_dict(),
    }


def _write_spec(spec, path: Path) -> None:  # noqa: ANN001
    text = spec.to_json() if path.suffix == ".json" else spec.to_yaml()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as e:
        raise RoadmapError(f"cannot write the spec to {path}: {e.strerror}") from None


# --- study commands (table / ablate / explain / walkthrough) ------------------------------


class TableFormat(str, Enum):
    rich = "rich"
    markdown = "markdown"
    csv = "csv"
    json = "json"
    latex = "latex"


StoreDataOpt = Annotated[
    str,
    typer.Option("--data", help="Data source whose trained results to show (as in `train`)."),
]
StoreRecipeOpt = Annotated[
    str, typer.Option("--recipe", help="Recipe whose trained results to show (as in `train`).")
]
ResultsOpt = Annotated[Path, typer.Option("--results", help="Root of the results store.")]
LatencyOpt = Annotated[
    bool,
    typer.Option("--latency/--no-latency", help="Measure the fused latency of every row now."),
]
StudyDeviceOpt = Annotated[str, typer.Option("--device", help="Device to measure latency on.")]
StudyItersOpt = Annotated[
    int, typer.Option("--iters", min=1, help="Timed latency iterations per network.")
]
StudyOutOpt = Annotated[
    Path | None, typer.Option("--out", help="Also write the output to this file.")
]


def latency_settings(on: bool, device: str, iters: int):  # noqa: ANN201 (LatencySettings)
    """LatencySettings for the study commands (None when latency is off)."""
    from roadmap.latency import DEVICES, LatencySettings

    if not on:
        return None
    if device not in DEVICES:
        raise RoadmapError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    return LatencySettings(device=device, iters=iters, warmup=3)


def render_study(rows, title: str, fmt: TableFormat, paper: bool, out: Path | None) -> None:  # noqa: ANN001
    """Print (and optionally write) study rows in the requested format."""
    from roadmap import study

    if fmt is TableFormat.rich:
        # Four metrics with two deltas each need ~120 columns; a pipe or file gets that width.
        wide = console if console.is_terminal else Console(width=max(console.width, 120))
        wide.print(report.study_table(rows, title, paper))
        text = None
    elif fmt is TableFormat.markdown:
        text = report.study_markdown(rows, title, paper)
    elif fmt is TableFormat.latex:
        text = report.study_latex(rows, title, paper)
    elif fmt is TableFormat.json:
        lat = next((r.latency for r in rows if r.latency is not None), None)
        text = json.dumps(
            {
                "title": title,
                "environment": lat.conditions if lat else None,
                "rows": [study.row_data(r) for r in rows],
            },
            indent=2,
        )
    else:
        text = _csv([study.row_data(r) for r in rows])
    if text is not None:
        print(text)
    if out is not None:
        _write_text(out, text if text is not None else report.study_markdown(rows, title, paper))
    unbuildable = report.unbuildable_text(rows)
    if unbuildable is not None and fmt is TableFormat.rich:
        console.print(unbuildable)


def _csv(records: list[dict]) -> str:
    import csv
    import io

    buffer = io.StringIO()
    columns = list(dict.fromkeys(key for rec in records for key in rec))  # first row: no deltas
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for rec in records:
        writer.writerow({k: ",".join(v) if isinstance(v, list) else v for k, v in rec.items()})
    return buffer.getvalue().rstrip("\n")


def _write_text(path: Path, text: str) -> None:
    from roadmap.results import write_text

    try:
        write_text(path, text + "\n")
    except OSError as e:
        raise RoadmapError(f"cannot write {path}: {e.strerror}") from None


def _store_names(data: str, recipe: str) -> tuple[str, str]:
    """The results store's names for a --data / --recipe pair."""
    from roadmap.data import parse_source

    return parse_source(data).slug, recipe


@app.command("table")
def table_cmd(
    data: StoreDataOpt = "digits",
    recipe: StoreRecipeOpt = "quick",
    upto: UptoOpt = None,
    steps: StepsOpt = None,
    skip: SkipOpt = None,
    fmt: Annotated[TableFormat, typer.Option("--format", help="Output format.")] = (
        TableFormat.rich
    ),
    baseline: Annotated[
        str | None, typer.Option("--baseline", help="Row the 'Δ base' columns compare with.")
    ] = None,
    paper: Annotated[
        bool, typer.Option("--paper/--no-paper", help="Show the paper's numbers.")
    ] = True,
    latency: LatencyOpt = True,
    device: StudyDeviceOpt = "cpu",
    iters: StudyItersOpt = 20,
    results: ResultsOpt = Path("results"),
    out: StudyOutOpt = None,
) -> None:
    """The roadmap as a table: size, fused latency, trained accuracy, Δs and the paper's numbers."""
    from roadmap import study

    data_name, recipe_name = _store_names(data, recipe)
    variants = study.prefixes(upto, steps=split_names(steps), skip=split_names(skip) or ())
    rows = study.collect(
        variants,
        latency_settings=latency_settings(latency, device, iters),
        results=results,
        data=data_name,
        recipe=recipe_name,
        baseline=baseline,
        paper=paper,
    )
    title = f"The roadmap, measured (accuracy: {data_name} / {recipe_name} from {results}/)"
    render_study(rows, title, fmt, paper, out)


@app.command("ablate")
def ablate_cmd(
    leave_one_out: Annotated[
        bool, typer.Option("--leave-one-out", help="The final model with each step left out.")
    ] = False,
    only_one: Annotated[
        bool, typer.Option("--only-one", help="The baseline with each step applied alone.")
    ] = False,
    upto: UptoOpt = None,
    data: StoreDataOpt = "digits",
    recipe: StoreRecipeOpt = "quick",
    fmt: Annotated[TableFormat, typer.Option("--format", help="Output format.")] = (
        TableFormat.rich
    ),
    latency: LatencyOpt = True,
    device: StudyDeviceOpt = "cpu",
    iters: StudyItersOpt = 20,
    results: ResultsOpt = Path("results"),
    out: StudyOutOpt = None,
) -> None:
    """Ablations: what each step is worth alone, or what the final model loses without it."""
    from roadmap import study

    if leave_one_out == only_one:
        raise RoadmapError("choose one of --leave-one-out or --only-one")
    variants = study.leave_one_out(upto) if leave_one_out else study.only_one(upto)
    data_name, recipe_name = _store_names(data, recipe)
    rows = study.collect(
        variants,
        latency_settings=latency_settings(latency, device, iters),
        results=results,
        data=data_name,
        recipe=recipe_name,
        baseline=variants[0].name,
        paper=False,
    )
    kind = "leave one out" if leave_one_out else "only one"
    title = f"Ablation ({kind}); Δ base = against {variants[0].name}"
    render_study(rows, title, fmt, False, out)


@app.command("explain")
def explain_cmd(
    step: Annotated[str, typer.Argument(help="The step to explain (see `roadmap steps`).")],
    latency: LatencyOpt = True,
    device: StudyDeviceOpt = "cpu",
    iters: StudyItersOpt = 20,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print raw Markdown instead of rendering it.")
    ] = False,
) -> None:
    """One step's lesson: why, what changes (diff and block), the numbers, how to reproduce."""
    from rich.markdown import Markdown

    from roadmap import teach

    text = teach.lesson_markdown(
        teach.lesson(step, latency_settings=latency_settings(latency, device, iters))
    )
    if markdown:
        print(text)
    else:
        console.print(Markdown(text))


@app.command("walkthrough")
def walkthrough_cmd(
    upto: UptoOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write one Markdown document (with table and plot) here."),
    ] = None,
    latency: Annotated[
        bool, typer.Option("--latency/--no-latency", help="Measure fused latency of every step.")
    ] = True,
    device: StudyDeviceOpt = "cpu",
    iters: StudyItersOpt = 20,
) -> None:
    """All lessons in order: page through them here, or write them as one document (--out)."""
    from roadmap import study, teach

    variants = study.prefixes(upto)
    rows = study.collect(variants, latency_settings=latency_settings(latency, device, iters))
    lessons = [teach.lesson(v.variant.name, rows=rows) for v in rows]
    if out is None:
        _page_lessons([teach.lesson_markdown(les) for les in lessons])
        return
    table = report.study_markdown(rows, "Every step, measured here", paper=True)
    plot_name = _walkthrough_plot(rows, out)
    _write_text(out, teach.walkthrough_markdown(lessons, table, plot_name))
    console.print(f"wrote {out}" + (f" and {out.parent / plot_name}" if plot_name else ""))


def _walkthrough_plot(rows, out: Path) -> str | None:  # noqa: ANN001
    """Draw the roadmap plot beside the document; its file name, or None without latency."""
    if not any(r.latency for r in rows):
        return None
    from roadmap.plot import plot_rows

    path = out.with_name(out.stem + "_roadmap.png")
    plot_rows(rows, path)
    return path.name


def _page_lessons(pages: list[str]) -> None:
    """Show lessons one at a time (n/p/q) on a terminal; print them all otherwise."""
    from rich.markdown import Markdown

    if not sys.stdin.isatty():
        for page in pages:
            console.print(Markdown(page))
            console.rule()
        return
    i = 0
    while 0 <= i < len(pages):
        console.clear()
        console.print(Markdown(pages[i]))
        answer = console.input(f"[dim]({i + 1}/{len(pages)}) [n]ext, [p]revious, [q]uit: [/]")
        if answer.strip().lower().startswith("q"):
            return
        i = max(0, i - 1) if answer.strip().lower().startswith("p") else i + 1


# --- deploy commands (latency / export) ---------------------------------------------------
# The library modules are imported inside the commands: only these two need them.


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


class Backend(str, Enum):
    eager = "eager"
    torchscript = "torchscript"
    onnxruntime = "onnxruntime"


class ExportFormat(str, Enum):
    onnx = "onnx"
    torchscript = "torchscript"
    coreml = "coreml"


# Unique names: with postponed annotations, typer resolves an alias when the app runs, so a later
# alias of the same name would silently replace these.
DeployImgSizeOpt = Annotated[
    int, typer.Option("--img-size", min=32, help="Input resolution (square).")
]
DeployBatchOpt = Annotated[int, typer.Option("--batch", min=1, help="Images per forward pass.")]


@app.command("latency")
def latency_cmd(
    upto: UptoOpt = None,
    steps: StepsOpt = None,
    skip: SkipOpt = None,
    all_steps: Annotated[
        bool, typer.Option("--all", help="Measure every step, interleaved round by round.")
    ] = False,
    device: Annotated[Device, typer.Option("--device", help="Where to run.")] = Device.cpu,
    batch: DeployBatchOpt = 1,
    img_size: DeployImgSizeOpt = 224,
    threads: Annotated[
        int | None,
        typer.Option("--threads", min=1, help="CPU threads (default: what torch uses now)."),
    ] = None,
    channels_last: Annotated[
        bool, typer.Option("--channels-last", help="Channels-last memory format (torch only).")
    ] = False,
    backend: Annotated[Backend, typer.Option("--backend", help="What runs the model.")] = (
        Backend.eager
    ),
    unfused: Annotated[
        bool, typer.Option("--unfused", help="Time the training form instead of the fused one.")
    ] = False,
    warmup: Annotated[
        int, typer.Option("--warmup", min=0, help="Untimed iterations per model first.")
    ] = 5,
    iters: Annotated[int, typer.Option("--iters", min=1, help="Timed iterations per model.")] = 30,
    num_classes: NumClassesOpt = 1000,
    fmt: FormatOpt = Format.table,
) -> None:
    """Latency of the fused model: median and IQR in ms, with the conditions they hold under."""
    from roadmap import latency

    if all_steps and (upto or steps or skip):
        raise RoadmapError("--all measures every step; drop --upto/--steps/--skip")
    selections = latency.every_step() if all_steps else [resolve(upto, steps, skip)]
    settings = latency.LatencySettings(
        device.value, batch, img_size, threads, channels_last, backend.value, warmup, iters
    )
    records = latency.measure_steps(
        selections, settings, fused=not unfused, num_classes=num_classes
    )
    if fmt is Format.json:
        print(json.dumps(report.latency_data(records), indent=2))
    else:
        console.print(report.latency_table(records))


@app.command("export")
def export_cmd(
    upto: UptoOpt = None,
    steps: StepsOpt = None,
    skip: SkipOpt = None,
    fmt: Annotated[ExportFormat, typer.Option("--format", help="File format.")] = (
        ExportFormat.onnx
    ),
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Destination (default: STEP.onnx / STEP.pt / STEP.mlpackage)."),
    ] = None,
    img_size: DeployImgSizeOpt = 224,
    batch: DeployBatchOpt = 1,
    num_classes: NumClassesOpt = 1000,
) -> None:
    """Export the fused (deploy) model to ONNX, TorchScript or Core ML, checked against torch."""
    from roadmap.export import SUFFIX, export_model

    names = resolve(upto, steps, skip)
    model = build(registry.build_spec(steps=names, num_classes=num_classes))
    out = out or Path(names[-1] + SUFFIX[fmt.value])
    result = export_model(model, fmt.value, out, img_size=img_size, batch=batch)
    console.print(report.export_text(result))


# --- plot --------------------------------------------------------------------------------


@app.command("plot")
def plot_cmd(
    out: Annotated[Path, typer.Option("--out", help="The figure to write: .png, .svg or .pdf.")],
    upto: UptoOpt = None,
    steps: StepsOpt = None,
    skip: SkipOpt = None,
    data: Annotated[
        str | None,
        typer.Option("--data", help="Data source whose trained top-1 to plot (with --recipe)."),
    ] = None,
    recipe: Annotated[
        str | None, typer.Option("--recipe", help="Recipe whose trained top-1 to plot.")
    ] = None,
    results: ResultsOpt = Path("results"),
    device: StudyDeviceOpt = "cpu",
    iters: StudyItersOpt = 30,
) -> None:
    """Figure: the paper's latency/top-1 trajectory, ours beside it, and each step's Δ."""
    from roadmap import study
    from roadmap.plot import check_out, plot_rows

    check_out(out)  # a bad suffix fails now, not after minutes of measuring
    if (data is None) != (recipe is None):
        raise RoadmapError("give --data and --recipe together (or neither: no accuracy)")
    names = _store_names(data, recipe) if data and recipe else (None, None)
    variants = study.prefixes(upto, steps=split_names(steps), skip=split_names(skip) or ())
    rows = study.collect(
        variants,
        latency_settings=latency_settings(True, device, iters),
        results=results,
        data=names[0],
        recipe=names[1],
    )
    on = f"{names[0]}, recipe {names[1]}" if data else None
    console.print(f"figure written to {plot_rows(rows, out, accuracy_on=on)}")


# --- training commands (train / eval / run) ----------------------------------------------
# (kept together below this line)

DataOpt = Annotated[
    str,
    typer.Option(
        "--data",
        help="digits (bundled, no download) | imagefolder:PATH (PATH/train, PATH/val) | "
        "cifar10[:ROOT] | cifar100[:ROOT] | synthetic[:N] (random tensors, throughput only).",
    ),
]
RecipeOpt = Annotated[
    str, typer.Option("--recipe", help="A shipped recipe (paper, quick) or a recipe YAML file.")
]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", min=1, help="Override the epochs.")]
BatchSizeOpt = Annotated[
    int | None,
    typer.Option("--batch-size", min=1, help="Override the global batch (all processes)."),
]
LrOpt = Annotated[
    float | None,
    typer.Option("--lr", help="Override the base lr; the peak lr is base x global batch / 512."),
]
ImgSizeOpt = Annotated[
    int | None, typer.Option("--img-size", min=32, help="Override the resolution (pixels).")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of init, data order, augmentation.")]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=0,
        help="Data-loader workers per process (default: 0 for digits and synthetic, else 8).",
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu or cuda.")]
AmpOpt = Annotated[bool, typer.Option("--amp", help="Mixed precision (bfloat16, else float16).")]
ChannelsLastOpt = Annotated[
    bool, typer.Option("--channels-last", help="NHWC memory format for model and inputs.")
]
CompileOpt = Annotated[bool, typer.Option("--compile", help="torch.compile the training model.")]
OutOpt = Annotated[Path, typer.Option("--out", help="Root of the results store.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="No progress bars or notes.")]
DownloadOpt = Annotated[
    bool, typer.Option("--download", help="Allow CIFAR to download (nothing else ever does).")
]
BadImagesOpt = Annotated[
    str,
    typer.Option("--bad-images", help="An undecodable image: error (stop) or skip (and count)."),
]


def _recipe(recipe: str, epochs, batch_size, lr, img_size):  # noqa: ANN001, ANN202
    from roadmap.recipe import load_recipe

    return load_recipe(recipe, epochs=epochs, batch_size=batch_size, base_lr=lr, img_size=img_size)


def _run_options(**options):  # noqa: ANN003, ANN202
    import os
    import shlex

    from roadmap.train import RunOptions

    launcher = ["roadmap"]
    if "LOCAL_WORLD_SIZE" in os.environ:  # started by torchrun
        launcher = ["torchrun", f"--nproc_per_node={os.environ['LOCAL_WORLD_SIZE']}", "-m"]
        launcher.append("roadmap")
    return RunOptions(command=shlex.join([*launcher, *sys.argv[1:]]), **options)


def _primary() -> bool:
    """Under torchrun only rank 0 prints."""
    import os

    return os.environ.get("RANK", "0") == "0"


@app.command("train")
def train_cmd(
    upto: UptoOpt = None,
    steps: StepsOpt = None,
    skip: SkipOpt = None,
    data: DataOpt = "digits",
    recipe: RecipeOpt = "quick",
    epochs: EpochsOpt = None,
    batch_size: BatchSizeOpt = None,
    lr: LrOpt = None,
    img_size: ImgSizeOpt = None,
    seed: SeedOpt = 0,
    workers: WorkersOpt = None,
    device: DeviceOpt = "cpu",
    amp: AmpOpt = False,
    channels_last: ChannelsLastOpt = False,
    compile: CompileOpt = False,
    out: OutOpt = Path("results"),
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the run folder's last.pt.")
    ] = False,
    quiet: QuietOpt = False,
    download: DownloadOpt = False,
    bad_images: BadImagesOpt = "error",
) -> None:
    """Train one network and write its record to results/<data>/<recipe>/<step>/seed<k>/.

    Multi-GPU: torchrun --nproc_per_node=N -m roadmap train ...
    """
    from roadmap import train as training

    record = training.train(
        training.Selection(upto, _tuple(steps), tuple(split_names(skip) or ())),
        data,
        _recipe(recipe, epochs, batch_size, lr, img_size),
        _run_options(
            seed=seed,
            workers=workers,
            device=device,
            amp=amp,
            channels_last=channels_last,
            compile=compile,
            quiet=quiet,
            resume=resume,
            download=download,
            bad_images=bad_images,
            out=out,
        ),
    )
    if _primary():
        console.print(training.record_table(record))


@app.command("eval")
def eval_cmd(
    checkpoint: Annotated[
        Path, typer.Option("--checkpoint", help="A last.pt written by roadmap train.")
    ],
    upto: UptoOpt = None,
    steps: StepsOpt = None,
    skip: SkipOpt = None,
    data: DataOpt = "digits",
    ema: Annotated[bool, typer.Option("--ema", help="Score the EMA weights.")] = False,
    workers: WorkersOpt = None,
    device: DeviceOpt = "cpu",
    download: DownloadOpt = False,
    bad_images: BadImagesOpt = "error",
    fmt: FormatOpt = Format.table,
) -> None:
    """Top-1/top-5 of a checkpoint in its training form and its fused form (they must agree)."""
    from roadmap import train as training

    scores = training.evaluate_checkpoint(
        training.Selection(upto, _tuple(steps), tuple(split_names(skip) or ())),
        checkpoint,
        data,
        _run_options(workers=workers, device=device, download=download, bad_images=bad_images),
        use_ema=ema,
    )
    if fmt is Format.json:
        print(json.dumps(scores, indent=2))
    else:
        console.print(training.eval_table(scores))


@app.command("run")
def run_cmd(
    upto: UptoOpt = None,
    skip: SkipOpt = None,
    seeds: Annotated[str, typer.Option("--seeds", help="Comma-separated seeds, e.g. 0,1,2.")] = "0",
    data: DataOpt = "digits",
    recipe: RecipeOpt = "quick",
    epochs: EpochsOpt = None,
    batch_size: BatchSizeOpt = None,
    lr: LrOpt = None,
    img_size: ImgSizeOpt = None,
    workers: WorkersOpt = None,
    device: DeviceOpt = "cpu",
    amp: AmpOpt = False,
    channels_last: ChannelsLastOpt = False,
    compile: CompileOpt = False,
    out: OutOpt = Path("results"),
    quiet: QuietOpt = False,
    download: DownloadOpt = False,
    bad_images: BadImagesOpt = "error",
    leave_one_out: Annotated[
        bool, typer.Option("--leave-one-out", help="Train the `ablate --leave-one-out` set.")
    ] = False,
    only_one: Annotated[
        bool, typer.Option("--only-one", help="Train the `ablate --only-one` set.")
    ] = False,
) -> None:
    """Train every step of the roadmap prefix (minus --skip) for each seed; what the store
    already has is skipped, and an interrupted step resumes."""
    from roadmap import train as training

    outcomes = training.sweep(
        data,
        _recipe(recipe, epochs, batch_size, lr, img_size),
        upto=upto,
        skip=tuple(split_names(skip) or ()),
        selections=_ablation_selections(leave_one_out, only_one, upto, skip),
        seeds=_seeds(seeds),
        options=_run_options(
            workers=workers,
            device=device,
            amp=amp,
            channels_last=channels_last,
            compile=compile,
            quiet=quiet,
            download=download,
            bad_images=bad_images,
            out=out,
        ),
    )
    if _primary():
        console.print(training.sweep_table(outcomes))


def _tuple(names: str | None) -> tuple[str, ...] | None:
    listed = split_names(names)
    return None if listed is None else tuple(listed)


def _seeds(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(seed) for seed in value.split(",") if seed.strip())
    except ValueError:
        raise RoadmapError(f"--seeds takes comma-separated whole numbers, got {value!r}") from None


def _ablation_selections(leave_one_out: bool, only_one: bool, upto: str | None, skip: str | None):  # noqa: ANN202
    """The ablation set to train (None: the plain prefix); says which ablations cannot be built."""
    from roadmap import study
    from roadmap.train import Selection

    if not (leave_one_out or only_one):
        return None
    if leave_one_out and only_one:
        raise RoadmapError("choose one of --leave-one-out or --only-one")
    if skip:
        raise RoadmapError("--skip does not combine with --leave-one-out / --only-one")
    variants = study.leave_one_out(upto) if leave_one_out else study.only_one(upto)
    for v in variants:
        if v.steps is None and _primary():
            err_console.print(f"not trained, cannot be built: {v.name}: {v.reason}")
    return [Selection(steps=v.steps) for v in variants if v.steps is not None]


def main() -> None:
    """Console-script entry point."""
    app(prog_name="roadmap")


if __name__ == "__main__":
    sys.exit(main())
