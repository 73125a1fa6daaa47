"""Properties of the code's structure: the sub-packages are layers (no import points up),
import order does not matter, the CLI starts without torch, and the CLI's lists of choices are
the library's."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from roadmap.cli import options
from tests.helpers import REPO

ROOT = REPO
# The sub-packages from the bottom up: a module may import its own layer and the layers below.
LAYERS = (
    ("util", "errors"),  # files, typed fields, stderr filter; the exceptions
    ("arch",),  # spec, steps' helpers and registry, block kinds, builder, fuse, selection
    ("interop",),  # timm: published weights, the roadmap's networks as timm models
    ("measure",),  # counts, latency, profile, runtimes and exports
    ("results",),  # the store and the run record
    ("train",),  # recipes, data, the loop, checkpoints, evaluation
    ("study",),  # what a study compares, sweeps, the comparison rows, statistics
    ("report",),  # tables and plots
    ("teach",),  # lessons, diagrams, the walkthrough page
    ("cli", "__main__"),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
# The public API names modules as strings, and imports nothing eagerly.
EXEMPT = {"__init__"}


def layer_of(module: str) -> str:
    """``roadmap.arch.spec`` -> ``arch``; ``roadmap.errors`` -> ``errors``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def imported(source: str, package: str) -> set[str]:
    """Every ``roadmap.*`` module a source file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("roadmap.")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "roadmap":  # from roadmap import arch / from roadmap import errors
                found |= {f"roadmap.{a.name}" for a in node.names}
            elif node.module.startswith("roadmap."):
                found.add(node.module)
    return found


def upward_imports(source: str, layer: str) -> list[str]:
    """The imports of a module in ``layer`` that reach a layer above it."""
    return sorted(
        m
        for m in imported(source, layer)
        if layer_of(m) in RANK and RANK[layer_of(m)] > RANK[layer]
    )


def library_modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted((ROOT / "roadmap").rglob("*.py")):
        parts = path.relative_to(ROOT / "roadmap").with_suffix("").parts
        if parts == ("__init__",) or parts[0] in EXEMPT:
            continue
        out.append((parts[0], path))
    return out


def test_every_module_belongs_to_a_layer() -> None:
    assert {layer for layer, _ in library_modules()} <= set(RANK)


def test_no_layer_imports_a_layer_above_it() -> None:
    wrong = {
        str(path.relative_to(ROOT)): up
        for layer, path in library_modules()
        if (up := upward_imports(path.read_text(), layer))
    }
    assert not wrong


def test_the_layer_check_sees_an_import_inside_a_function() -> None:
    source = "def f():\n    from roadmap.report import tables\n"
    assert upward_imports(source, "arch") == ["roadmap.report"]
    assert upward_imports("from roadmap import cli\n", "teach") == ["roadmap.cli"]
    assert upward_imports("from roadmap.arch import spec\n", "teach") == []


def test_roadmap_packages_use_only_the_architecture_layer() -> None:
    paths = sorted((ROOT / "steps").rglob("*.py"))
    assert len({p.parent for p in paths}) >= 5  # steps/, each roadmap and its blocks
    for path in paths:
        layers = {layer_of(m) for m in imported(path.read_text(), "steps")}
        assert layers <= {"arch", "errors"}, path


def test_the_library_names_no_roadmap() -> None:
    """Every roadmap is a package: the library's code holds none's name but the command line's
    default (docstrings and comments may speak of them)."""
    import roadmap

    names = set(roadmap.roadmap_names())
    found = []
    for _layer, path in library_modules() + [("", ROOT / "roadmap" / "__init__.py")]:
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        found += [
            f"{path.relative_to(ROOT)}:{node.lineno}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in names and id(node) not in docstrings
        ]
    assert found == ["roadmap/cli/options.py:" + str(_line_of("DEFAULT_ROADMAP ="))]


def _line_of(text: str) -> int:
    lines = (ROOT / "roadmap" / "cli" / "options.py").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.startswith(text))


def test_the_cli_default_is_the_roadmap_with_bare_names() -> None:
    """Commands the library suggests leave out --roadmap for the roadmap with bare names: that
    must be the one the command line picks without it."""
    from roadmap.arch.roadmaps import bare_roadmap

    assert bare_roadmap().name == options.DEFAULT_ROADMAP


def test_every_package_folder_is_installed() -> None:
    """pyproject lists the packages (the roadmaps install under another name than their
    folder's); a folder missing from the list would be missing from every install."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    where = {name: ROOT / folder for name, folder in config["package-dir"].items()}
    folders = {
        ".".join((top, *init.parent.relative_to(root).parts))
        for top, root in where.items()
        for init in root.rglob("__init__.py")
    }
    assert set(config["packages"]) == folders


def python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.slow  # two fresh interpreters importing torch and timm, started together
@pytest.mark.heavy
def test_timm_models_do_not_depend_on_import_order() -> None:
    # the two orders a user's code can take (importing roadmap.interop.timm_models first is the
    # second: it imports roadmap before any roadmap package)
    orders = [
        "import roadmap_steps.repvit; import roadmap",
        "import roadmap; import roadmap_steps.repvit",
    ]
    check = (
        "; import roadmap, timm; roadmap.register_timm_models(); "
        "print(len(timm.list_models('roadmap_*')), roadmap.list_steps('repvit')[-1])"
    )
    running = [
        subprocess.Popen(
            [sys.executable, "-c", order + check],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for order in orders
    ]
    said = set()
    for process in running:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        said.add(out.strip())
    (only,) = said  # every order: the same models
    count, last = only.split()
    # RepViT's 11 steps and 6 family members, ConvNeXt's 13 and 4 (and any installed package's)
    assert int(count) >= 34 and last == "alternating_se"


def test_a_step_registered_before_the_papers_still_comes_after_them() -> None:
    out = python(
        "from roadmap import register_step\n"
        "@register_step('early', title='t', section='ext', roadmap='repvit')\n"
        "def early(spec): return spec\n"
        "import roadmap; steps = roadmap.list_steps('repvit')\n"
        "print(steps[0], steps[-1], len(steps))"
    )
    assert out == "mobilenetv3_large early 12"


def test_the_cli_starts_without_torch() -> None:
    """`roadmap --help` must be fast: no command module may import torch at import time."""
    out = python(
        "import sys, roadmap.cli, roadmap.cli.arch, roadmap.cli.study, roadmap.cli.train; "
        "print(sorted(m for m in ('torch', 'timm', 'fvcore') if m in sys.modules))"
    )
    assert out == "[]"


def test_cli_choices_are_the_librarys() -> None:
    from roadmap.measure import latency
    from roadmap.train import data

    assert [d.value for d in options.Device] == list(latency.DEVICES)
    assert [b.value for b in options.BadImages] == list(data.BAD_IMAGE_POLICIES)


def _helps() -> dict[str, str]:
    """Every option's help text, by its flag, over every command."""
    import typer.main

    from roadmap.cli import app

    group = typer.main.get_command(app)
    return {
        f"{name} {p.opts[0]}": p.help or ""
        for name, command in group.commands.items()
        for p in command.params
        if p.opts and p.opts[0].startswith("--")
    }


def test_every_help_that_lists_choices_lists_the_registrys() -> None:
    """The choices an option's help lists are the registries' (runtimes, export formats, data
    sources, families), so a new one shows up without touching the command line."""
    import roadmap
    from roadmap.measure import runtimes
    from roadmap.train.sources import data_kinds

    helps = _helps()
    expected = {
        "latency --backend": runtimes.backends(),
        "table --backend": runtimes.backends(),
        "export --format": runtimes.formats(),
        "train --data": [k.usage() for k in data_kinds()],
        "build --size": [
            s.label for r in roadmap.roadmap_names() for s in roadmap.get_roadmap(r).family
        ],
        "train --workers": [k.name for k in data_kinds() if k.in_memory],
    }
    for option, names in expected.items():
        text = " ".join(helps[option].split())
        assert all(name in text for name in names), (option, text)
    assert options.backend_help() == helps["latency --backend"]
    assert options.format_help() == helps["export --format"]


def test_no_module_of_the_library_is_too_long_to_read() -> None:
    lengths = {
        str(p.relative_to(ROOT)): len(p.read_text().splitlines())
        for p in (ROOT / "roadmap").rglob("*.py")
    }
    assert lengths["roadmap/train/loop.py"] < 500  # the training loop stays readable
    # a module holds one subject; past 500 lines it is holding two
    assert max(lengths.values()) <= 500, {k: v for k, v in lengths.items() if v > 500}
