"""`roadmap steps` and `roadmap build` as a user runs them."""

import json

import pytest
import yaml
from typer.testing import CliRunner

import roadmap
from roadmap.arch.spec import NetSpec
from roadmap.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def test_steps_lists_every_step_with_paper_numbers():
    result = run("steps")
    assert result.exit_code == 0
    for name in roadmap.list_steps("repvit"):
        assert name in result.output
    assert "71.5" in result.output and "0.87" in result.output


def test_steps_json():
    data = json.loads(run("steps", "--format", "json").output)
    assert [d["name"] for d in data] == roadmap.list_steps("repvit")
    assert data[-1]["paper_top1"] == 77.4


def test_build_table_shows_tree_counts_and_change():
    result = run("build", "--upto", "simple_classifier")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "stem" in out and "stages.3: width 384" in out and "blocks.1: repvit" in out
    assert "head: avgpool -> BN + linear 1000" in out
    assert "3,736,960" in out and "3,714,664" in out  # training and deploy params
    assert "hidden_channels: 1280 -> None  [head]" in out
    assert "against the network before simple_classifier" in out


def test_build_json_parses_with_the_promised_keys():
    result = run("build", "--upto", "alternating_se", "--format", "json", "--num-classes", "10")
    data = json.loads(result.stdout)
    assert data["steps"][-1] == "alternating_se" and len(data["steps"]) == 11
    assert data["num_classes"] == 10
    assert data["params"] == 5_103_560 - 384 * 990 - 990  # the 1000-class linear, shrunk to 10
    assert {"macs", "deploy_params", "deploy_macs", "macs_unit", "spec"} <= set(data)


def test_build_papers_control():
    result = run("build", "--steps", "mobilenetv3_large,gelu,expansion_2,widen")
    assert result.exit_code == 0, result.output
    assert "inverted_residual" in result.output and "repvit" not in result.output


def test_save_spec_round_trips(tmp_path):
    path = tmp_path / "spec.yaml"
    assert run("build", "--upto", "widen", "--save-spec", str(path)).exit_code == 0
    assert NetSpec.load(path) == roadmap.build_spec("widen", roadmap="repvit")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["build", "--upto", "nonsense"],
            "unknown step 'nonsense' in roadmap 'repvit'; known steps: mobilenet",
        ),
        (["build", "--skip", "separate_mixers"], "apply separate_mixers before it"),
        (["build", "--steps", ","], "empty step list"),
        (["--plugin", "/nonexistent/steps.py", "steps"], "plugin file not found"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message):
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args", [["build", "--num-classes", "0"], ["build", "--format", "xml"], ["build", "--bogus"]]
)
def test_bad_option_values_exit_2(args):
    result = run(*args)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "build --help" in lines[0]  # the command whose options to look up


def test_debug_shows_the_traceback():
    result = run("--debug", "build", "--upto", "nonsense")
    assert result.exit_code != 0 and isinstance(result.exception, roadmap.RoadmapError)


def test_one_epoch_on_tiny_data_is_trained_stored_and_tabled(tmp_path) -> None:
    """The fast tier's training path: one epoch on generated images, then the table reads it."""
    results = str(tmp_path / "results")
    tiny = ["--data", "synthetic:16", "--epochs", "1", "--batch-size", "8", "--img-size", "32"]
    trained = runner.invoke(
        app, ["train", "--upto", "gelu", *tiny, "--workers", "0", "--quiet", "--results", results]
    )
    assert trained.exit_code == 0, trained.output
    (folder,) = (tmp_path / "results" / "synthetic-16").glob("*/gelu/seed0")
    label = folder.parents[1].name
    table = runner.invoke(
        app,
        ["table", "--upto", "gelu", "--data", "synthetic:16", "--recipe", label, "--no-latency",
         "--results", results, "--format", "json"],
    )  # fmt: skip
    rows = json.loads(table.stdout)["rows"]
    assert rows[0]["top1"] is None and rows[1]["top1"] is not None  # only gelu was trained


def test_recipes_lists_every_key_of_every_shipped_recipe() -> None:
    from roadmap.train.recipe import builtin_recipes

    data = json.loads(run("recipes", "--format", "json").stdout)
    assert sorted(data) == builtin_recipes()
    assert data["paper"]["base_lr"] == 1e-3 and data["quick"]["img_size"] == 32
    assert "mixup_switch_prob" in run("recipes").stdout


@pytest.mark.slow
def test_a_run_with_set_is_filed_under_the_recipes_hash(tmp_path) -> None:
    tiny = ["--data", "synthetic:16", "--epochs", "1", "--batch-size", "8", "--img-size", "32"]
    args = ["train", "--upto", "gelu", *tiny, "--workers", "0", "--quiet"]
    result = run(*args, "--set", "label_smoothing=0", "--set", "hflip=0.5", "--results",
                 str(tmp_path))  # fmt: skip
    assert result.exit_code == 0, result.output
    (metrics,) = tmp_path.glob("synthetic-16/quick-*/gelu/seed0/metrics.json")
    assert json.loads(metrics.read_text())["recipe"] == metrics.parents[2].name  # quick-<hash>
    recipe = yaml.safe_load((metrics.parent / "recipe.yaml").read_text())
    assert (recipe["label_smoothing"], recipe["hflip"]) == (0.0, 0.5)
    bad = run(*args, "--set", "hflip=2", "--results", str(tmp_path))
    assert bad.exit_code == 2 and "key 'hflip' is out of range: 2.0" in bad.output
