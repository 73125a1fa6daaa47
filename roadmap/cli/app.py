"""The typer app every command module registers on, and how errors leave it.

Every user-fixable problem arrives here as a :class:`RoadmapError` (or an ``OSError`` or an
allocation failure the library did not foresee) and leaves as one ``error:`` line on stderr with
exit code 2; ``roadmap --debug ...`` shows the traceback instead. A training run that stopped on
request (:class:`Stopped`) prints its message and exits with its own code (130 Ctrl-C, 143
SIGTERM).

Nothing here imports torch: ``roadmap --help`` must start fast.
"""

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from roadmap.errors import EXIT_INTERRUPTED, EXIT_USAGE, RoadmapError, Stopped

console = Console()
err_console = Console(stderr=True)
state = {"debug": False}


def error_line(message: str) -> None:
    """Print one ``error:`` line on stderr (the message is text, not rich markup)."""
    # escape: 'pip install -e ".[coreml]"' must not be read as markup
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


UNBOUNDED = 100_000  # columns: measure a table's natural width, not the terminal's


def show(renderable: object) -> None:
    """Print a table or tree: on a terminal at the terminal's width; anywhere else (a log, CI,
    ``| less``) at its natural width, so that no number is ever cut to an ellipsis."""
    if console.is_terminal:
        console.print(renderable)
        return
    unbounded = console.options.update(max_width=UNBOUNDED)
    width = max(console.width, console.measure(renderable, options=unbounded).maximum)
    Console(width=width).print(renderable)


def note_line(message: str) -> None:
    """Print one plain line on stderr (warnings, and where a stopped run stands)."""
    err_console.print(escape(message), highlight=False, soft_wrap=True)


# In a log, how far a long step is along is worth a line every so often, not every update.
LOG_PROGRESS_EVERY_S = 10.0


@contextmanager
def working(what: str) -> Iterator[Callable[[str], None]]:
    """Say what a long step is doing: a spinner on a terminal, one line in a log. Yields a
    function that says how far along it is: the spinner's text, or in a log one more line at
    most every ``LOG_PROGRESS_EVERY_S`` seconds (a short step stays one line)."""
    if not err_console.is_terminal:
        note_line(what)
        last = [time.monotonic()]

        def say(text: str) -> None:
            if time.monotonic() - last[0] >= LOG_PROGRESS_EVERY_S:
                note_line(f"{what}: {text}")
                last[0] = time.monotonic()

        yield say
        return
    with err_console.status(escape(what)) as status:
        yield lambda text: status.update(escape(f"{what}: {text}"))


TRAINING_COMMANDS = ("train", "run")


def _stopped_message(command: str | None) -> str:
    """What a Ctrl-C leaves behind, for the command it stopped."""
    if command in TRAINING_COMMANDS:
        return "stopped at once (a finished epoch's last.pt is kept; --resume continues)"
    return "stopped at once (nothing is half-written: files are written whole or not at all)"


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader left


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's exit-time flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _is_out_of_memory(e: BaseException) -> bool:
    """Whether an exception is an allocation failure (torch's CPU and CUDA allocators included),
    told by its type's name and message so that this module need not import torch."""
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and (
        "can't allocate memory" in text or "out of memory" in text.lower()
    )


def _size_options() -> str:
    """The size options the failed command was given on the command line (not defaults the
    user never typed), e.g. `` (--img-size 4096, --batch 64)``."""
    asked = [
        f"--{name.replace('_', '-')} {value}"
        for name, value in state.get("given", {}).items()
        if name in ("num_classes", "img_size", "batch", "batch_size") and value is not None
    ]
    return f" ({', '.join(asked)})" if asked else ""


def _typed(ctx: Any, name: str) -> bool:
    """Whether an option's value came from the command line (click's parameter source)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


class Command(TyperCommand):
    """Remembers the options a command was invoked with, for the error messages above."""

    def invoke(self, ctx):  # noqa: ANN001, ANN201 (click's signature)
        typed = {p.name for p in self.params if _typed(ctx, p.name)}
        state["given"] = {k: v for k, v in ctx.params.items() if k in typed}
        state["command"] = ctx.info_name
        return super().invoke(ctx)


class Group(TyperGroup):
    """Turns RoadmapError, OSError, allocation failures and bad options into one line."""

    def invoke(self, ctx):  # noqa: ANN001, ANN201 (click's signature)
        try:
            return super().invoke(ctx)
        except Stopped as e:
            note_line(str(e))
            raise typer.Exit(e.exit_code) from None
        except BrokenPipeError:  # `roadmap ... | head` closed the pipe: nothing left to say
            _silence_stdout()
            raise typer.Exit(EXIT_BROKEN_PIPE) from None
        except KeyboardInterrupt:
            from roadmap.train.interrupt import pressed  # light: signal and sys

            pressed()
            note_line(_stopped_message(state.get("command")))
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as e:
            message = self._user_message(e)
            if message is None or state["debug"]:
                raise
            error_line(message)
            raise typer.Exit(EXIT_USAGE) from None

    @staticmethod
    def _user_message(e: Exception) -> str | None:
        if isinstance(e, RoadmapError):
            return str(e)
        if _is_out_of_memory(e):
            return (
                f"not enough memory for what `roadmap {state.get('command', '')}` was asked"
                f"{_size_options()}; ask for less (a smaller --batch, --batch-size, "
                "--img-size or --num-classes)"
            )
        if isinstance(e, OSError):
            where = f" ({e.filename})" if e.filename else ""
            return f"{e.strerror or e}{where}"
        return None

    def main(self, *args, standalone_mode: bool = True, **kwargs):  # noqa: ANN002, ANN003, ANN201
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except Exception as e:  # click's usage errors, duck-typed: typer vendors click privately
            if not hasattr(e, "format_message") or type(e).__name__ == "NoArgsIsHelpError":
                if hasattr(e, "show"):  # no arguments at all: show the help
                    e.show()
                    sys.exit(getattr(e, "exit_code", EXIT_USAGE))
                raise
            ctx = getattr(e, "ctx", None)
            where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            error_line(e.format_message() + where)
            sys.exit(getattr(e, "exit_code", EXIT_USAGE))
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help texts are plain text: 'pip install -e ".[mobile]"' keeps its brackets (rich markup
    # would read "[mobile]" as a style and drop it).
    rich_markup_mode=None,
    help="Modernization roadmaps, step by step: RepViT's (MobileNetV3-L -> RepViT-M0.9, the "
    "default), ConvNeXt's (ResNet-50 -> ConvNeXt-T, --roadmap convnext), Visformer's (DeiT-S -> "
    "Visformer-S, --roadmap visformer) and any installed package's (roadmap roadmaps).",
)


def command(name: str):  # noqa: ANN201 (typer's decorator)
    """Register a command on the app (with :class:`Command`, so failures can name its options)."""
    return app.command(name, cls=Command)
