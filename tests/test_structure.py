"""Properties of the code's structure: import order does not matter, the CLI starts without
torch, and the CLI's lists of choices are the library's."""

import subprocess
import sys
from pathlib import Path

import pytest

from roadmap.cli import options

ROOT = Path(__file__).resolve().parents[1]


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


@pytest.mark.parametrize(
    "imports",
    ["import steps; import roadmap", "import roadmap; import steps", "import roadmap.timm_models"],
)
def test_timm_models_do_not_depend_on_import_order(imports: str) -> None:
    out = python(
        f"{imports}; import roadmap, timm; roadmap.register_timm_models(); "
        "print(len(timm.list_models('roadmap_*')), roadmap.list_steps()[-1])"
    )
    assert out == "17 alternating_se"  # 11 steps and 6 family members


def test_a_step_registered_before_the_papers_still_comes_after_them() -> None:
    out = python(
        "from roadmap import register_step\n"
        "@register_step('early', title='t', section='ext')\n"
        "def early(spec): return spec\n"
        "import roadmap; steps = roadmap.list_steps(); print(steps[0], steps[-1], len(steps))"
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
    from roadmap import data, export, latency

    assert [d.value for d in options.Device] == list(latency.DEVICES)
    assert [b.value for b in options.Backend] == list(latency.BACKENDS)
    assert [f.value for f in options.ExportFormat] == list(export.FORMATS)
    assert [b.value for b in options.BadImages] == list(data.BAD_IMAGE_POLICIES)


def test_no_module_of_the_library_is_too_long_to_read() -> None:
    lengths = {p.name: len(p.read_text().splitlines()) for p in (ROOT / "roadmap").rglob("*.py")}
    assert lengths["train.py"] < 500
    assert max(lengths.values()) <= 620, lengths
