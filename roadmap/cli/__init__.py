"""The ``roadmap`` command line: parse, call the library, render. No logic of its own.

The commands live by group: :mod:`roadmap.cli.arch` (steps, build, latency, export),
:mod:`roadmap.cli.study` (table, ablate, plot, explain, walkthrough) and
:mod:`roadmap.cli.train` (train, eval, run); their options are defined once in
:mod:`roadmap.cli.options`, and :mod:`roadmap.cli.app` turns failures into one line.
"""

import sys
from pathlib import Path
from typing import Annotated

import typer

from roadmap.cli import arch, study, train  # noqa: F401 (they register the commands)
from roadmap.cli.app import app, state


@app.callback()
def _main(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")
    ] = False,
    plugin: Annotated[
        list[Path] | None,
        typer.Option(
            "--plugin",
            help="A Python file, or a package's folder, that registers extra steps, block "
            "kinds or a whole roadmap (repeatable). It runs with your permissions: load only "
            "code you trust.",
        ),
    ] = None,
) -> None:
    state["debug"] = debug
    if plugin:
        from roadmap.arch import registry

        for path in plugin:
            registry.load_plugin(path)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="roadmap")


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["app", "main"]
