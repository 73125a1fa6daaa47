"""The spec as data, both ways: hand-edit a spec file, then build, measure and train it.

Loading checks every field's type and range (YAML is forgiving: ``use_se: "no"`` is a truthy
string), and every command that takes a network takes ``--spec FILE`` with steps on top.
"""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import roadmap
from roadmap.arch.spec import NetSpec
from roadmap.cli import app
from roadmap.errors import RoadmapError

runner = CliRunner()


def edited(tmp_path: Path, edit, name: str = "net.yaml", upto: str = "widen") -> Path:  # noqa: ANN001
    data = roadmap.build_spec(upto, roadmap="repvit").to_dict()
    edit(data)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def set_block(field: str, value: object):  # noqa: ANN201
    def edit(data: dict) -> None:
        data["stages"][0]["blocks"][0][field] = value

    return edit


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("use_se", "no", "stages.0.blocks.0.use_se: must be true or false, got 'no'"),
        ("out_channels", "48", "stages.0.blocks.0.out_channels: must be a whole number, got '48'"),
        ("expand_ratio", "2", "expand_ratio: must be a finite number"),
        ("kernel_size", 4, "stages.0.blocks.0: kernel_size must be odd"),
        ("out_channels", 10**9, "out_channels must be between 1 and 16384"),
        ("activation", "swish", "activation 'swish' not in"),
    ],
)
def test_every_field_is_type_checked(tmp_path, field: str, value: object, message: str) -> None:
    path = edited(tmp_path, set_block(field, value))
    with pytest.raises(RoadmapError, match=message.replace("(", r"\(")):
        NetSpec.load(path)


def test_structure_errors_name_the_path(tmp_path) -> None:
    path = edited(tmp_path, lambda d: d.update(stages={"blocks": []}))
    with pytest.raises(RoadmapError, match="spec.stages: expected a list"):
        NetSpec.load(path)
    path = edited(tmp_path, lambda d: d["head"].update(norm="yes"))
    with pytest.raises(RoadmapError, match="spec.head.norm: must be true or false"):
        NetSpec.load(path)


def test_whole_numbers_for_float_fields_load_as_the_same_network(tmp_path) -> None:
    """``expand_ratio: 2`` and ``2.0`` are one network, with one spec hash."""
    path = edited(tmp_path, set_block("expand_ratio", 2))
    loaded = NetSpec.load(path)
    assert loaded.stages[0].blocks[0].expand_ratio == 2.0
    assert roadmap.spec_hash(loaded) == roadmap.spec_hash(
        roadmap.build_spec("widen", roadmap="repvit")
    )


def test_save_spec_refuses_a_suffix_it_would_not_honour(tmp_path) -> None:
    for name in ("spec.txt", "spec"):
        with pytest.raises(RoadmapError, match="ends in .yaml, .yml, .json"):
            roadmap.build_spec("gelu", roadmap="repvit").save(tmp_path / name)
    roadmap.build_spec("gelu", roadmap="repvit").save(tmp_path / "spec.json")
    assert json.loads((tmp_path / "spec.json").read_text())["num_classes"] == 1000


def run(*args: object) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout  # stderr carries notes and progress


@pytest.mark.slow
def test_a_hand_edited_spec_builds_measures_exports_and_explains(tmp_path) -> None:
    """Widen the first stage by hand, then ask every architecture command about it."""
    path = edited(tmp_path, set_block("out_channels", 64), upto="stage_ratio")
    out = json.loads(run("build", "--spec", path, "--format", "json"))
    assert out["name"].startswith("spec-net-") and out["steps"] == []
    with_step = json.loads(
        run("build", "--spec", path, "--steps", "kernel_3x3", "--format", "json")
    )
    assert with_step["name"] == out["name"] + "+kernel_3x3"
    assert any("kernel_size: 5 -> 3" in c for c in with_step["changes"])
    latency = json.loads(
        run("latency", "--spec", path, "--iters", "1", "--img-size", "32", "--format", "json")
    )
    assert latency["records"][0]["step"] == out["name"]
    run("export", "--spec", path, "--out", tmp_path / "net.onnx", "--img-size", "32")
    assert (tmp_path / "net.onnx").stat().st_size > 0
    rows = json.loads(
        run("table", "--spec", path, "--steps", "kernel_3x3", "--no-latency", "--format", "json")
    )["rows"]
    assert [r["name"] for r in rows] == [out["name"], with_step["name"]]
    assert rows[0]["paper_top1"] is None  # the paper never saw this network
    lesson = run("explain", "kernel_3x3", "--spec", path, "--no-latency", "--markdown")
    assert "kernel_size: 5 -> 3" in lesson and f"--spec {path}" in lesson


@pytest.mark.slow
def test_a_spec_file_trains_evaluates_and_is_found_by_run(tmp_path) -> None:
    path = tmp_path / "mnv3.yaml"
    run("build", "--upto", "gelu", "--save-spec", path)
    budget = ["--data", "synthetic:16", "--epochs", "1", "--batch-size", "8", "--quiet"]
    budget += ["--out", tmp_path / "results"]
    run("train", "--spec", path, *budget)
    (ckpt,) = (tmp_path / "results").glob("synthetic-16/*/spec-mnv3-*/seed0/last.pt")
    evaluate = ["eval", "--spec", path, "--checkpoint", ckpt, "--data", "synthetic:16"]
    scores = json.loads(run(*evaluate, "--format", "json"))
    assert scores["top1"] == scores["fused_top1"] and scores["name"].startswith("spec-mnv3-")
    assert "stored" in run("run", "--spec", path, *budget)  # the same network, already trained
