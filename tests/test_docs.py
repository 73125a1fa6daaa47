"""The documentation: the site builds with no broken link, and every command it shows exists.

``mkdocs build --strict`` (full tier) fails on a broken link, a missing page, a bad anchor or an
API reference that does not resolve. The command check reads every ``roadmap ...`` line in the
README's and the site's bash blocks and holds its command and each of its options to the CLI as
it is: a page cannot show an option that was renamed or never existed.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer

from roadmap.cli import app

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def shown_commands(text: str) -> list[str]:
    """The `roadmap ...` command lines of a Markdown text's bash blocks (continuations joined,
    comments dropped)."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip()
            for prefix in ("srun torchrun --nproc_per_node=8 -m roadmap ", ".venv/bin/roadmap "):
                line = line.replace(prefix, "roadmap ")
            if line.startswith("roadmap "):
                found.append(line)
    return found


def check_line(line: str, root: click.Group) -> str | None:
    """What is wrong with one shown command line, or None."""
    words = shlex.split(line, comments=True)[1:]
    globals_ = {o for p in root.params for o in p.opts}
    while words and words[0] in globals_:
        words = words[2:] if words[0] == "--plugin" else words[1:]
    if not words:
        return None
    command = root.commands.get(words[0])
    if command is None:
        return f"no command {words[0]!r}"
    known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
    for word in words[1:]:
        if word.startswith("--"):
            option = word.split("=", 1)[0]
            if option not in known:
                return f"`roadmap {words[0]}` has no option {option}"
    return None


def test_every_command_the_pages_show_exists() -> None:
    root = typer.main.get_command(app)
    problems, seen = [], 0
    for page in PAGES:
        for line in shown_commands(page.read_text()):
            seen += 1
            problem = check_line(line, root)
            if problem:
                problems.append(f"{page.relative_to(REPO)}: {line}: {problem}")
    assert not problems, "\n".join(problems)
    assert seen > 60  # the pages do show commands: the reader found them


def test_the_check_catches_a_wrong_command() -> None:
    root = typer.main.get_command(app)
    assert check_line("roadmap table --data digits", root) is None
    assert check_line("roadmap --plugin x.py explain relu", root) is None
    assert "no option --dta" in check_line("roadmap table --dta digits", root)
    assert "no command" in check_line("roadmap tabel", root)
    block = "```bash\nroadmap a \\\n  --b 1  # c\nls\n```"
    assert shown_commands(block) == ["roadmap a  --b 1  # c"]


@pytest.mark.slow
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason='pip install -e ".[docs]"')
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # Material's notice about its future
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    for page in ("index.html", "notebooks/repvit/index.html", "reference/api/index.html"):
        assert (tmp_path / page).is_file(), page
    api = (tmp_path / "reference/api/index.html").read_text()
    assert "register_step" in api and "fuse" in api  # the docstrings were read
    for page in (tmp_path / "reference").glob("*/index.html"):  # Sphinx roles shown as code
        assert not _roles_extension().ROLE.search(page.read_text()), page


def _roles_extension():  # noqa: ANN202
    """docs/griffe_roles.py, the mkdocstrings extension (docs/ is no package)."""
    import importlib.util

    pytest.importorskip("griffe", reason='pip install -e ".[docs]"')
    spec = importlib.util.spec_from_file_location("griffe_roles", REPO / "docs/griffe_roles.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sphinx_roles_read_as_sphinx_shows_them() -> None:
    roles = _roles_extension()
    ROLE, displayed = roles.ROLE, roles.displayed
    text = "See :class:`~roadmap.arch.spec.NetSpec`, :func:`fuse` and :py:mod:`roadmap.arch`."
    assert displayed(text) == "See `NetSpec`, `fuse` and `roadmap.arch`."
    assert ROLE.search(text) and not ROLE.search(displayed(text))
