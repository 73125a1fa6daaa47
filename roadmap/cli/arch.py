"""Commands about one network's architecture and deployment: steps, build, latency, export.

Library modules are imported inside the commands, so that ``--help`` stays fast.
"""

import contextlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from roadmap.cli.app import command, console, note_line, show, working
from roadmap.cli.groups import select, uses
from roadmap.cli.options import (
    DEFAULT_ROADMAP,
    BackendOpt,
    BatchOpt,
    Device,
    DeviceOpt,
    Format,
    FormatOpt,
    ImgSizeOpt,
    Int8Opt,
    NumClassesOpt,
    PretrainedFileOpt,
    PretrainedOpt,
    RoadmapOpt,
    ThreadsOpt,
    WarmupOpt,
    checked_format,
    format_help,
)
from roadmap.errors import RoadmapError
from roadmap.measure.runtimes import for_format, get_runtime


@command("steps")
def steps_cmd(fmt: FormatOpt = Format.table, roadmap: RoadmapOpt = DEFAULT_ROADMAP) -> None:
    """List a roadmap's steps in order, with the paper's section and numbers."""
    from roadmap.arch import registry
    from roadmap.report import catalogue

    steps = registry.all_steps(roadmap)
    if fmt is Format.json:
        print(json.dumps(catalogue.steps_data(steps), indent=2))
    else:
        show(catalogue.steps_table(roadmap, steps))


@command("roadmaps")
def roadmaps_cmd(fmt: FormatOpt = Format.table) -> None:
    """List the installed roadmaps: the paper, the way it goes, its steps and what it measured."""
    from roadmap.arch import registry
    from roadmap.arch.roadmaps import get_roadmap, roadmap_names
    from roadmap.report import catalogue

    registry.load_everything()  # plugins' roadmaps too
    # the command line's default first, then the others as they registered
    names = sorted(roadmap_names(), key=lambda name: name != DEFAULT_ROADMAP)
    found = [get_roadmap(name) for name in names]
    if fmt is Format.json:
        print(json.dumps(catalogue.roadmaps_data(found), indent=2))
    else:
        show(catalogue.roadmaps_table(found))


@command("blocks")
def blocks_cmd(fmt: FormatOpt = Format.table) -> None:
    """List the block kinds a spec may use: what each is, the fields it reads, its own fields."""
    from roadmap.arch import blocks, registry
    from roadmap.report import catalogue

    registry.load_everything()  # the installed roadmaps, and with them the kinds they declare
    kinds = [blocks.get_block_kind(name) for name in blocks.block_kinds()]
    if fmt is Format.json:
        print(json.dumps(catalogue.block_kinds_data(kinds), indent=2))
    else:
        show(catalogue.block_kinds_table(kinds))


@command("verify")
def verify_cmd(roadmap: RoadmapOpt = DEFAULT_ROADMAP, fmt: FormatOpt = Format.table) -> None:
    """Prove a roadmap's ends equal the timm models it names: the same parameters, the same
    layers in the same order, the same logits with the same weights (random weights: nothing is
    downloaded). Exits 1 when one differs."""
    from roadmap.arch.roadmaps import get_roadmap
    from roadmap.interop.reference import check_roadmap
    from roadmap.report import catalogue

    found = get_roadmap(roadmap)
    if not found.references:
        raise RoadmapError(f"roadmap {found.name!r} names no reference models to verify against")
    with working(f"checking {found.name}'s ends against timm"):
        ends = check_roadmap(roadmap)
    if fmt is Format.json:
        print(json.dumps(catalogue.reference_data(ends), indent=2))
    else:
        show(catalogue.reference_table(found, ends))
    if not all(end.check.equal for end in ends):
        raise typer.Exit(1)


@command("build")
@uses(network=select)
def build_cmd(
    network: Any,
    num_classes: NumClassesOpt = 1000,
    img_size: ImgSizeOpt = 224,
    fmt: FormatOpt = Format.table,
    save_spec: Annotated[
        Path | None,
        typer.Option("--save-spec", help="Write the spec to this file (.yaml, .yml or .json)."),
    ] = None,
    pretrained: PretrainedOpt = False,
    pretrained_file: PretrainedFileOpt = None,
) -> None:
    """Build a prefix or ablation of the roadmap; show its structure, size and last change."""
    from roadmap.arch.builder import build
    from roadmap.arch.spec import spec_hash
    from roadmap.measure.counts import count_network
    from roadmap.report import tables

    spec = network.spec(num_classes)
    previous = network.before_last_step()
    changes = network.last_changes(num_classes)
    if save_spec:
        spec.save(save_spec)
    model = build(spec)
    loaded = _load(model, network, pretrained, pretrained_file)
    counts = count_network(spec, img_size, model=model)  # weights change no count
    if fmt is Format.json:
        print(json.dumps(tables.build_data(network, spec, counts, changes), indent=2))
        return
    against = f"the network before {network.steps[-1]}" if previous else "nothing (the start)"
    start = [f"spec {network.start_file}"] if network.start is not None else []
    console.print(
        f"[bold]network:[/] {network.name}   [dim]{' -> '.join(start + list(network.steps))}"
        f"   spec {spec_hash(spec)}[/]"
    )
    show(tables.spec_tree(spec, tables.changed_paths(changes)))
    show(tables.counts_table(counts))
    console.print(tables.changes_text(changes, against))
    if save_spec:
        console.print(f"spec written to {save_spec}")
    if loaded is not None:
        console.print(tables.loaded_text(loaded))


@command("latency")
@uses(network=select)
def latency_cmd(
    network: Any,
    all_steps: Annotated[
        bool, typer.Option("--all", help="Measure every step, interleaved round by round.")
    ] = False,
    device: DeviceOpt = Device.cpu,
    batch: BatchOpt = 1,
    img_size: ImgSizeOpt = 224,
    threads: ThreadsOpt = None,
    channels_last: Annotated[
        bool, typer.Option("--channels-last", help="Channels-last memory format (torch only).")
    ] = False,
    backend: BackendOpt = "eager",
    int8: Int8Opt = False,
    unfused: Annotated[
        bool, typer.Option("--unfused", help="Time the training form instead of the fused one.")
    ] = False,
    warmup: WarmupOpt = 5,
    iters: Annotated[int, typer.Option("--iters", min=1, help="Timed iterations per model.")] = 30,
    num_classes: NumClassesOpt = 1000,
    fmt: FormatOpt = Format.table,
) -> None:
    """Latency of the fused model: median and IQR in ms, with the conditions they hold under."""
    from roadmap.measure import latency
    from roadmap.report import tables
    from roadmap.study import comparison, plan

    _every_step_alone(network, all_steps, "measures")
    _warn_threads(threads)
    settings = latency.LatencySettings(
        device=device.value,
        batch=batch,
        img_size=img_size,
        threads=threads,
        channels_last=channels_last,
        backend=backend,
        warmup=warmup,
        iters=iters,
        int8=int8,
    )
    chosen = plan.every_step(network.roadmap) if all_steps else [network]
    settings.check()  # before saying what we are about to do
    what = f"timing {len(chosen)} network(s) with {backend}"
    if backend != "eager":
        what += f" ({get_runtime(backend).title}; preparing each first can take seconds)"
    # one network in torch eager takes a second or two: only the long runs say what they do
    slow = all_steps or backend != "eager"
    with working(what) if slow else contextlib.nullcontext():
        records = latency.measure_selections(
            chosen, settings, fused=not unfused, num_classes=num_classes
        )
    # the paper times deployed (fused) models
    agreement = None if unfused else comparison.latency_agreement(chosen, records)
    if fmt is Format.json:
        print(json.dumps(tables.latency_data(records, agreement), indent=2))
    else:
        show(tables.latency_table(records, agreement))


@command("profile")
@uses(network=select)
def profile_cmd(
    network: Any,
    all_steps: Annotated[
        bool, typer.Option("--all", help="Profile every step (a kind-by-step matrix).")
    ] = False,
    alone: Annotated[
        bool,
        typer.Option("--alone", help="Only this network, not against the one before its step."),
    ] = False,
    batch: BatchOpt = 1,
    img_size: ImgSizeOpt = 224,
    threads: ThreadsOpt = None,
    unfused: Annotated[
        bool, typer.Option("--unfused", help="Profile the training form instead of the fused one.")
    ] = False,
    warmup: WarmupOpt = 3,
    iters: Annotated[
        int, typer.Option("--iters", min=1, help="Profiled forward passes per network.")
    ] = 20,
    num_classes: NumClassesOpt = 1000,
    fmt: FormatOpt = Format.table,
) -> None:
    """Why latency changed: a forward pass's CPU time by layer kind (stem, token mixer, SE,
    channel mixer, downsampling, head, activations), against the network before the step."""
    from roadmap.measure import latency, profile
    from roadmap.report import profile_table
    from roadmap.study import plan

    _every_step_alone(network, all_steps, "profiles")
    _warn_threads(threads)
    settings = latency.LatencySettings(
        batch=batch, img_size=img_size, threads=threads, warmup=warmup, iters=iters
    )
    before = None if alone else network.before_last_step()
    chosen = plan.every_step(network.roadmap) if all_steps else [n for n in (before, network) if n]
    profile.check(settings)
    with working(f"profiling {len(chosen)} network(s), {iters} passes each, interleaved"):
        profiles = profile.profile_selections(
            chosen, settings, fused=not unfused, num_classes=num_classes
        )
    if fmt is Format.json:
        print(json.dumps(profile_table.profile_data(profiles), indent=2))
    else:
        show(profile_table.profile_table(profiles))


def _every_step_alone(network: Any, all_steps: bool, verb: str) -> None:
    """--all takes the whole roadmap: a selection beside it is a mistake, not a filter."""
    from roadmap.arch.selection import Selection

    whole = Selection.of(network.roadmap).steps
    if all_steps and (network.steps != whole or network.start):
        raise RoadmapError(f"--all {verb} every step; drop --upto/--steps/--skip/--spec")


def _warn_threads(threads: int | None) -> None:
    from roadmap.measure.latency import thread_warning

    warning = thread_warning(threads)
    if warning:
        note_line(f"warning: {warning}")


@command("export")
@uses(network=select)
def export_cmd(
    network: Any,
    fmt: Annotated[
        str, typer.Option("--format", metavar="FORMAT", callback=checked_format, help=format_help())
    ] = "onnx",
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Destination (default: the network's name and the suffix)."),
    ] = None,
    img_size: ImgSizeOpt = 224,
    batch: BatchOpt = 1,
    num_classes: NumClassesOpt = 1000,
    pretrained: PretrainedOpt = False,
    pretrained_file: PretrainedFileOpt = None,
    int8: Int8Opt = False,
) -> None:
    """Export the fused (deploy) model to a runtime's format (ONNX, TorchScript, ExecuTorch, Core
    ML, a plugin's), checked against torch."""
    from roadmap.arch.builder import build
    from roadmap.measure.export import export_model
    from roadmap.report import tables

    model = build(network.spec(num_classes))
    loaded = _load(model, network, pretrained, pretrained_file)
    if loaded is not None:
        console.print(tables.loaded_text(loaded))
    out = out or Path(network.name + for_format(fmt).suffix)
    result = export_model(model, fmt, out, img_size=img_size, batch=batch, int8=int8)
    console.print(tables.export_text(result))


def _load(model: Any, network: Any, pretrained: bool, file: Path | None) -> Any:
    """--pretrained: timm's weights into the model (None when not asked)."""
    if file is not None and not pretrained:
        raise RoadmapError("--pretrained-file goes with --pretrained")
    if not pretrained:
        return None
    from roadmap.interop.pretrained import load_pretrained

    return load_pretrained(model, network, str(file) if file else None)


@command("runtimes")
def runtimes_cmd(fmt: FormatOpt = Format.table) -> None:
    """List the runtimes: what `latency --backend` times and `export --format` writes, where
    each runs, and whether it is installed."""
    from roadmap.measure import runtimes
    from roadmap.report import catalogue

    found = runtimes.RUNTIMES.values()
    if fmt is Format.json:
        print(json.dumps(catalogue.runtimes_data(found), indent=2))
    else:
        show(catalogue.runtimes_table(found))
