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
from typer.core import TyperGroup

from roadmap import registry, report
from roadmap.build import build
from roadmap.errors import RoadmapError
from roadmap.measure import MACS_UNIT, count
from roadmap.spec import diff, spec_hash

console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}


class _Group(TyperGroup):
    """Turns RoadmapError into one line and exit code 2."""

    def invoke(self, ctx):  # noqa: ANN001, ANN201 (click's signature)
        try:
            return super().invoke(ctx)
        except RoadmapError as e:
            if _state["debug"]:
                raise
            err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None


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


# --- training commands (train / eval / run) ----------------------------------------------
# (kept together below this line)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="roadmap")


if __name__ == "__main__":
    sys.exit(main())
