"""Commands that compare networks and teach: table, ablate, plot, explain, walkthrough,
notebook."""

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from roadmap.cli.app import command, console, note_line, show, working
from roadmap.cli.groups import latency_group, plot_timing_group, select, uses
from roadmap.cli.options import (
    DEFAULT_ROADMAP,
    LeaveOneOutOpt,
    OnlyOneOpt,
    OutFileOpt,
    ResultsOpt,
    RoadmapOpt,
    StoreRecipeOpt,
    TableFormat,
    TableFormatOpt,
    checked_data,
    checked_step,
    write_out,
)
from roadmap.errors import RoadmapError

StoreDataOpt = Annotated[
    str | None,
    typer.Option(
        "--data",
        callback=checked_data,
        help="Data source whose trained results to show (as in `train`) [default: digits].",
    ),
]


def _store_data(data: str) -> str:
    """The results store's name for a --data value."""
    from roadmap.train.sources import parse_source

    return parse_source(data).slug


def _store_labels(results: Path, data: str | None, recipe: str | None) -> tuple[str, str]:
    """The (data, recipe label) to read accuracy under: digits/quick unless given. A label
    typed on the command line must be one the store holds; it is checked now, before minutes
    of measuring, and a typo is an error that lists what the store holds."""
    from roadmap.results import store

    name, label = _store_data(data or "digits"), recipe or "quick"
    if data is not None or recipe is not None:
        store.scan(results).require(results, name, label)
    return name, label


def _render(study: Any, title: str, fmt: TableFormat, paper: bool, out: Path | None) -> None:
    """Print (and optionally write) a study in the requested format."""

    from roadmap.report import study_table

    text = {
        TableFormat.markdown: lambda: study_table.study_markdown(study, title, paper),
        TableFormat.latex: lambda: study_table.study_latex(study, title, paper),
        TableFormat.json: lambda: study_table.study_json(study, title),
        TableFormat.csv: lambda: study_table.study_csv(study),
        TableFormat.rich: lambda: None,
    }[fmt]()
    if text is None:
        show(study_table.study_table(study, title, paper))
        unbuildable = study_table.unbuildable_text(study)
        if unbuildable is not None:
            console.print(unbuildable)
    else:
        print(text)
    if out is not None:
        write_out(
            out, text if text is not None else study_table.study_markdown(study, title, paper)
        )


def _collect(variants: Any, latency_settings: Any = None, **kwargs: Any) -> Any:
    """``comparison.collect``, saying what it is doing and how far along: counting a network
    takes a second or more, timing many takes minutes."""
    from roadmap.study import comparison

    what = f"counting {len(variants)} networks"
    if latency_settings is not None:
        what = (
            f"counting and timing {len(variants)} networks (fused, {latency_settings.backend}, "
            f"{latency_settings.iters} iterations each, interleaved); --no-latency skips the "
            "timing"
        )
    if latency_settings is not None and kwargs.get("int8"):
        what += (
            "; then quantizing and lowering each to an int8 ExecuTorch program and timing "
            "those (the slow part: every network is calibrated, quantized and lowered first)"
        )
    with working(what) as say:
        return comparison.collect(
            variants, latency_settings=latency_settings, progress=say, **kwargs
        )


@command("table")
@uses(network=select, timing=latency_group)
def table_cmd(
    network: Any,
    data: StoreDataOpt = None,
    recipe: StoreRecipeOpt = None,
    fmt: TableFormatOpt = TableFormat.rich,
    baseline: Annotated[
        str | None, typer.Option("--baseline", help="Row the 'Δ base' columns compare with.")
    ] = None,
    paper: Annotated[
        bool, typer.Option("--paper/--no-paper", help="Show the paper's numbers.")
    ] = True,
    timing: Any = None,
    results: ResultsOpt = Path("results"),
    out: OutFileOpt = None,
    family: Annotated[
        bool,
        typer.Option(
            "--family",
            help="One row per member of the roadmap's family instead (RepViT's M0.6 ... M2.3, "
            "ConvNeXt's T/S/B/L).",
        ),
    ] = False,
    int8: Annotated[
        bool,
        typer.Option(
            "--int8",
            help="Add the int8 ExecuTorch program's latency (timed now, beside the others) and "
            "its top-1 change against float32 (from roadmap eval --int8, stored in the "
            'records). Needs pip install -e ".[mobile]".',
        ),
    ] = False,
) -> None:
    """The roadmap as a table: size, fused latency, trained accuracy, Δs and the paper's numbers."""
    from roadmap.study import plan

    data_name, recipe = _store_labels(results, data, recipe)
    study = _collect(
        _family(network.roadmap) if family else plan.prefixes(network),
        latency_settings=timing,
        results=results,
        data=data_name,
        recipe=recipe,
        baseline=baseline,
        paper=paper,
        int8=int8,
    )
    what = f"The {network.roadmap.display} family" if family else "The roadmap"
    trained = any(row.accuracy for row in study.rows)
    accuracy = "accuracy" if trained else "no trained results yet for"
    title = f"{what}, measured ({accuracy} {data_name} / {recipe} in {results}/)"
    _render(study, title, fmt, paper, out)
    _warnings(study)


def _warnings(study: Any) -> None:
    """A busy machine while timing; trained results filed under another label."""
    from roadmap.report import study_table

    messages = [study_table.busy_text(study), *study_table.unreadable_lines(study)]
    messages += study_table.stale_lines(study)
    messages += study_table.unfinished_lines(study)
    for message in filter(None, [*messages, study_table.missing_results_text(study)]):
        note_line(message)


def _family(roadmap: Any) -> list[Any]:
    """``table --family``'s rows: the roadmap's family, or one line saying it has none."""
    from roadmap.study import plan

    if not roadmap.family:
        raise RoadmapError(f"--family: the {roadmap.name} roadmap has no family (no --size)")
    return plan.family(roadmap)


@command("ablate")
@uses(timing=latency_group)
def ablate_cmd(
    leave_one_out: LeaveOneOutOpt = False,
    only_one: OnlyOneOpt = False,
    upto: Annotated[
        str | None, typer.Option("--upto", help="Ablate the roadmap up to this step.")
    ] = None,
    data: StoreDataOpt = None,
    recipe: StoreRecipeOpt = None,
    fmt: TableFormatOpt = TableFormat.rich,
    timing: Any = None,
    results: ResultsOpt = Path("results"),
    out: OutFileOpt = None,
    roadmap: RoadmapOpt = DEFAULT_ROADMAP,
) -> None:
    """Ablations: what each step is worth alone, or what the final model loses without it."""
    from roadmap.study import plan

    if leave_one_out == only_one:
        raise RoadmapError("choose one of --leave-one-out or --only-one")
    data_name, recipe = _store_labels(results, data, recipe)
    ablate = plan.leave_one_out if leave_one_out else plan.only_one
    variants = ablate(roadmap, upto)
    study = _collect(
        variants,
        latency_settings=timing,
        results=results,
        data=data_name,
        recipe=recipe,
        baseline=variants[0].name,
        paper=False,
    )
    kind = "leave one out" if leave_one_out else "only one"
    _render(study, f"Ablation ({kind}); Δ base = against {variants[0].name}", fmt, False, out)
    _warnings(study)


@command("plot")
@uses(network=select, timing=plot_timing_group)
def plot_cmd(
    out: Annotated[Path, typer.Option("--out", help="The figure to write: .png, .svg or .pdf.")],
    network: Any = None,
    data: Annotated[
        str | None,
        typer.Option("--data", help="Data source whose trained top-1 to plot (with --recipe)."),
    ] = None,
    recipe: Annotated[
        str | None, typer.Option("--recipe", help="Recipe label whose trained top-1 to plot.")
    ] = None,
    results: ResultsOpt = Path("results"),
    timing: Any = None,
) -> None:
    """Figure: the paper's latency/top-1 trajectory, ours beside it, and each step's Δ."""
    from roadmap.report.plot import check_out, plot_study
    from roadmap.study import plan

    check_out(out)  # a bad suffix fails now, not after minutes of measuring
    if (data is None) != (recipe is None):
        raise RoadmapError("give --data and --recipe together (or neither: no accuracy)")
    data_name = None
    if data is not None:
        data_name, recipe = _store_labels(results, data, recipe)
    study = _collect(
        plan.prefixes(network),
        latency_settings=timing,
        results=results,
        data=data_name,
        recipe=recipe,
    )
    on = f"{data_name}, recipe {recipe}" if data else None
    console.print(f"figure written to {plot_study(study, out, accuracy_on=on)}")


@command("explain")
@uses(timing=latency_group)
def explain_cmd(
    step: Annotated[
        str,
        typer.Argument(help="The step to explain (see `roadmap steps`).", callback=checked_step),
    ],
    spec: Annotated[
        Path | None,
        typer.Option("--spec", help="Apply the step to this spec file's network instead."),
    ] = None,
    timing: Any = None,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print raw Markdown instead of rendering it.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write the lesson with its before/after diagrams: .html (self-contained) or "
            ".md (diagrams as SVG files beside it).",
        ),
    ] = None,
    roadmap: RoadmapOpt = DEFAULT_ROADMAP,
) -> None:
    """One step's lesson: why, what changes (diff, diagrams), the numbers, how to reproduce."""
    from rich.markdown import Markdown

    from roadmap.arch.selection import Selection
    from roadmap.teach import lesson

    start = Selection.of(roadmap, spec_file=spec) if spec is not None else None
    what = f"explaining {step}" + (": counting, timing and profiling it" if timing else "")
    with working(what) as say:
        les = lesson.lesson(step, roadmap, latency_settings=timing, start=start, progress=say)
    if out is not None:
        from roadmap.teach import html_page

        written = html_page.write_lessons(out, [les])
        console.print(f"wrote {', '.join(str(p) for p in written)}")
        return
    text = lesson.lesson_markdown(les)
    if markdown:
        print(text)
    else:
        console.print(Markdown(text))
    _warnings(les.study)


@command("walkthrough")
@uses(timing=latency_group)
def walkthrough_cmd(
    upto: Annotated[
        str | None, typer.Option("--upto", help="Teach the roadmap up to this step.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write it as one document: .html (self-contained, for a projector) or .md "
            "(diagrams and plot as files beside it).",
        ),
    ] = None,
    timing: Any = None,
    roadmap: RoadmapOpt = DEFAULT_ROADMAP,
) -> None:
    """All lessons in order: page through them here, or write them as one document (--out)."""
    from roadmap.arch.selection import Selection
    from roadmap.study import plan
    from roadmap.teach import html_page, lesson

    study = _collect(plan.prefixes(Selection.of(roadmap, upto)), latency_settings=timing)
    if timing is None:
        note_line(
            "--no-latency: the lessons carry no latency, and the roadmap plot shows sizes and "
            "accuracy where latency would be"
        )
    with working(f"writing {len(study.rows)} lessons") as say:
        lessons = []
        for i, row in enumerate(study.rows):
            say(f"lesson {i + 1}/{len(study.rows)}: {row.variant.about}")
            lessons.append(lesson.lesson(row.variant.about, roadmap, rows=study.rows))
    if out is None:
        _page_lessons([lesson.lesson_markdown(les) for les in lessons])
        return
    written = html_page.write_lessons(out, lessons, study)
    console.print(
        f"wrote {out}" + (f" and {len(written) - 1} file(s) beside it" if len(written) > 1 else "")
    )


@command("notebook")
def notebook_cmd(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="The .ipynb file to write (Jupyter's notebook format 4).",
            show_default=False,
        ),
    ],
    upto: Annotated[
        str | None, typer.Option("--upto", help="Teach the roadmap up to this step.")
    ] = None,
    roadmap: RoadmapOpt = DEFAULT_ROADMAP,
) -> None:
    """The roadmap as a Jupyter notebook to run cell by cell: each step's lesson, diff and
    diagrams as text; its size and latency, a short training, the plot and the exercises as
    cells that measure on the machine that runs them (a GPU when there is one)."""
    from roadmap.teach import notebook

    with working("writing the notebook: drawing and counting each step"):
        notebook.write_notebook(out, roadmap, upto)
    console.print(f"wrote {out}")
    console.print(f"open it with: jupyter lab {out}", soft_wrap=True)


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


@command("draw")
@uses(network=select)
def draw_cmd(
    network: Any,
    part: Annotated[
        str | None,
        typer.Option(
            "--part",
            help="stem, head, stages.N.downsample or stages.N.blocks.M (default: the part the "
            "last step changes).",
        ),
    ] = None,
    fused: Annotated[
        bool, typer.Option("--fused", help="Draw the deploy form (re-parameterized, BN folded).")
    ] = False,
    out: Annotated[Path | None, typer.Option("--out", help="The .svg file to write.")] = None,
) -> None:
    """Draw any part of any network as a block diagram (SVG), from its spec."""
    from roadmap.teach import diagram, lesson
    from roadmap.util import files

    spec = network.spec()
    if part is None:
        part = lesson.example_path(network.last_changes()) or "stages.2.blocks.0"
    out = out or Path(f"{network.name}_{part.replace('.', '_')}{'_fused' if fused else ''}.svg")
    if out.suffix != ".svg":
        raise RoadmapError(f"{out}: diagrams are written as .svg")
    files.write_text(out, diagram.svg(diagram.part(spec, part, fused)) + "\n")
    console.print(f"wrote {out} ({part}{', fused' if fused else ''})")
