"""Every command's help renders, and says what its source says (brackets included)."""

import re

import pytest
import typer
from typer.testing import CliRunner

from roadmap.cli import app

runner = CliRunner()
COMMANDS = sorted(c.name for c in typer.main.get_command(app).commands.values())


def flat(text: str) -> str:
    """Help text with its line wrapping undone."""
    return " ".join(text.split())


@pytest.mark.parametrize("name", COMMANDS)
def test_every_help_keeps_its_brackets(name: str) -> None:
    """`pip install -e ".[mobile]"` must not lose ``[mobile]`` to markup; every bracketed
    part of every option's help is in the rendered help."""
    command = typer.main.get_command(app).commands[name]
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    shown = flat(result.output)
    brackets = [
        part
        for param in command.params
        for part in re.findall(r"\[[^\]]+\]", getattr(param, "help", None) or "")
    ]
    for part in brackets:
        assert part in shown, f"{name} --help lost {part}"


def test_the_extras_are_named_where_they_are_needed() -> None:
    shown = flat(runner.invoke(app, ["latency", "--help"]).output)
    assert 'pip install -e ".[mobile]"' in shown
