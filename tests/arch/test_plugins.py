"""A researcher's own step, loaded from a file, works like the paper's steps."""

import json
import sys

import pytest
from typer.testing import CliRunner

import roadmap
from roadmap.arch import registry
from roadmap.cli import app
from tests.helpers import REPO

PLUGIN = str(REPO / "examples" / "relu_step.py")
runner = CliRunner()


@pytest.fixture(autouse=True)
def _restore_registry():
    """Plugin steps registered by a test must not leak into other tests."""
    registry.list_steps()
    saved = dict(registry._REGISTRY)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)
    for name in [m for m in sys.modules if m.startswith("roadmap_plugin_")]:
        del sys.modules[name]


def test_plugin_step_registers_after_the_papers():
    registry.load_plugin(PLUGIN)
    assert roadmap.list_steps()[-1] == "relu"
    assert "alternating_se" in roadmap.resolve_steps("relu")  # a prefix includes the roadmap
    spec = roadmap.build_spec(steps=["alternating_se", "relu"])
    assert {b.activation for _, b in spec.iter_blocks()} <= {"relu", "none"}


def test_plugin_works_in_steps_build_and_explain():
    out = runner.invoke(app, ["--plugin", PLUGIN, "steps", "--format", "json"]).output
    assert json.loads(out)[-1]["name"] == "relu"
    result = runner.invoke(
        app, ["--plugin", PLUGIN, "build", "--steps", "gelu,relu", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    changes = json.loads(result.output)["changes"]
    assert any(c.endswith("activation: gelu -> relu") for c in changes)
    result = runner.invoke(
        app, ["--plugin", PLUGIN, "explain", "relu", "--no-latency", "--markdown"]
    )
    assert result.exit_code == 0, result.output
    assert "ReLU instead of GELU" in result.output and "gelu -> relu" in result.output


def test_plugin_works_in_table():
    result = runner.invoke(
        app,
        ["--plugin", PLUGIN, "table", "--steps", "gelu,relu", "--no-latency", "--format", "json"],
    )
    rows = json.loads(result.output)["rows"]
    assert [r["name"] for r in rows] == ["mobilenetv3_large", "gelu", "gelu+relu"]
    assert rows[-1]["paper_top1"] is None  # not a paper step: no paper number invented


def test_broken_plugin_is_one_line(tmp_path):
    bad = tmp_path / "bad_steps.py"
    bad.write_text("import no_such_module\n")
    result = runner.invoke(app, ["--plugin", str(bad), "steps"])
    assert result.exit_code == 2
    assert "failed to load: ModuleNotFoundError" in result.output


def test_plugin_reusing_a_name_is_refused(tmp_path):
    clash = tmp_path / "clash.py"
    clash.write_text(
        "from roadmap import register_step\n"
        "register_step('gelu', title='again', section='§x')(lambda spec: spec)\n"
    )
    result = runner.invoke(app, ["--plugin", str(clash), "steps"])
    assert result.exit_code == 2
    assert "step 'gelu' is already registered" in result.output
