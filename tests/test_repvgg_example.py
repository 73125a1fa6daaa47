"""The example of a roadmap of one's own (examples/repvgg_roadmap), used as its author would.

The package lives outside ``roadmap/`` and ``steps/``, registers itself through the
``roadmap.steps`` entry point (or ``--plugin FOLDER``), and may use only the public API. Its
end must be timm's ``repvgg_a0`` exactly, its deploy form the plain network of its first step,
and every command must work on it.
"""

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from torch import nn
from typer.testing import CliRunner

import roadmap
from roadmap.arch import registry
from roadmap.cli import app
from roadmap.measure.counts import count_macs
from tests.helpers import REPO, SLOW, calibrate_bn, executed_layers, isolated_registries

EXAMPLE = REPO / "examples" / "repvgg_roadmap"
PACKAGE = EXAMPLE / "repvgg_roadmap"
PLUGIN = ["--plugin", str(PACKAGE)]
STEPS = ["vgg_a0", "branch_1x1", "branch_identity"]
runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def _example():
    """Load the package as `--plugin FOLDER` does; unregister it afterwards (the registries
    are process-wide, and other tests count the installed roadmaps)."""
    with isolated_registries():
        registry.load_plugin(PACKAGE)
        yield


def cli(*args: object) -> str:
    result = runner.invoke(app, [*PLUGIN, *(str(a) for a in args)])
    assert result.exit_code == 0, result.output
    return result.stdout


def model(step: str, **kwargs) -> nn.Module:
    return roadmap.build_model(step, roadmap="repvgg", **kwargs)


def test_steps_are_the_papers_ablation_with_its_numbers() -> None:
    data = json.loads(cli("steps", "--roadmap", "repvgg", "--format", "json"))
    assert [s["name"] for s in data] == STEPS
    assert [s["paper_top1"] for s in data] == [72.39, 73.15, 75.14]


def test_the_end_is_timms_repvgg_a0() -> None:
    assert sum(p.numel() for p in model("branch_identity").parameters()) == 9_108_968
    assert sum(p.numel() for p in timm.create_model("repvgg_a0").parameters()) == 9_108_968
    ours = model("branch_identity", num_classes=10)
    check = roadmap.check_reference(ours, timm.create_model("repvgg_a0", num_classes=10))
    assert check.equal, check
    assert check.layers == (105, 105)


def test_the_check_fails_on_a_network_one_branch_short() -> None:
    """The same check must see a difference: the step before has no identity branches."""
    ours = model("branch_1x1", num_classes=10)
    check = roadmap.check_reference(ours, timm.create_model("repvgg_a0", num_classes=10))
    assert not check.equal and "BatchNorm" in check.difference


@pytest.mark.parametrize("step", STEPS)
def test_every_step_deploys_as_the_plain_network(step: str) -> None:
    """Fused equals unfused, and the fused network is the first step's: 3x3 convs and ReLUs,
    the same parameters and MACs whatever the branches were."""
    torch.manual_seed(0)
    trained = calibrate_bn(model(step, num_classes=10), img_size=32)
    fused = roadmap.fuse(trained)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), trained(x), rtol=1e-4, atol=1e-4)
    assert not [m for m in fused.modules() if isinstance(m, nn.BatchNorm2d)]
    plain = roadmap.fuse(model("vgg_a0", num_classes=10))
    shapes = [tuple(p.shape) for p in fused.parameters()]
    assert shapes == [tuple(p.shape) for p in plain.parameters()]
    assert count_macs(fused, 64) == count_macs(plain, 64)


def test_the_lessons_worked_example() -> None:
    """The numbers in branch_1x1's and branch_identity's lessons, computed by the block: one
    channel, the patch [[1, 2, 0], [0, 1, 3], [2, 0, 1]], a 3x3 kernel and a 1x1 kernel of 3."""
    kind = roadmap.get_block_kind("repvgg")
    patch = torch.tensor([[1.0, 2, 0], [0, 1, 3], [2, 0, 1]])[None, None]
    kernel = torch.tensor([[0.0, 1, 0], [1, -1, 1], [0, 1, 0]])
    for identity, total, centre in ((False, 7.0, 2.0), (True, 8.0, 3.0)):
        spec = roadmap.BlockSpec(
            "repvgg", out_channels=1, extra={"branch_1x1": True, "identity": identity}
        )
        block = kind.build(1, spec).eval()
        with torch.no_grad():
            for bn in (m for m in block.modules() if isinstance(m, nn.BatchNorm2d)):
                bn.weight.fill_(1.0), bn.bias.zero_(), bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)  # the identity, exactly
            block.conv_kxk.conv.weight.copy_(kernel[None, None])
            block.conv_1x1.conv.weight.fill_(3.0)
            assert block(patch)[0, 0, 1, 1].item() == pytest.approx(total)
            folded = block.fuse().conv.weight[0, 0]
        expected = torch.tensor([[0.0, 1, 0], [1, centre, 1], [0, 1, 0]])
        torch.testing.assert_close(folded, expected, rtol=0, atol=1e-6)


def test_it_starts_as_timm_starts() -> None:
    """Convs normal with std sqrt(2 / fan_out), BatchNorm weights N(0.1, 0.1), biases
    N(0, 0.1), the classifier normal with std 0.01: checked on the pooled values of each."""
    torch.manual_seed(0)
    ours = model("branch_identity")
    theirs = timm.create_model("repvgg_a0")
    for net in (ours, theirs):
        norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
        weight = torch.cat([m.weight.detach() for m in norms])
        bias = torch.cat([m.bias.detach() for m in norms])
        assert weight.mean().item() == pytest.approx(0.1, abs=0.01)
        assert weight.std().item() == pytest.approx(0.1, abs=0.01)
        assert bias.std().item() == pytest.approx(0.1, abs=0.01)
        assert net.get_classifier().weight.std().item() == pytest.approx(0.01, rel=0.05)
    convs = [[m for m in executed_layers(n) if isinstance(m, nn.Conv2d)] for n in (ours, theirs)]
    for a, b in zip(*convs, strict=True):
        assert a.weight.std().item() == pytest.approx(b.weight.std().item(), rel=0.2)


def test_the_example_uses_the_public_api_only() -> None:
    """Every name it takes from roadmap is in ``roadmap.__all__``; no module below it."""
    public = set(roadmap.__all__)
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("roadmap"):
                assert node.module == "roadmap", f"{path.name} imports {node.module}"
                assert {a.name for a in node.names} <= public, path.name
            if isinstance(node, ast.Import):
                assert not [a for a in node.names if a.name.startswith("roadmap.")], path.name


def code_lines(path: Path) -> int:
    """Lines of code: not blank, not a comment, not inside a docstring (the lessons)."""
    tree = ast.parse(path.read_text())
    docs = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                docs.update(range(body[0].lineno, body[0].end_lineno + 1))
    lines = path.read_text().splitlines()
    return sum(
        1
        for i, line in enumerate(lines, 1)
        if line.strip() and not line.strip().startswith("#") and i not in docs
    )


def test_the_guide_states_the_examples_size() -> None:
    total = sum(code_lines(p) for p in PACKAGE.glob("*.py"))
    guide = (REPO / "docs" / "extend" / "your_own_roadmap.md").read_text()
    assert f"{total} lines of code" in guide, total
    readme = " ".join((REPO / "README.md").read_text().split())
    assert f"({total} lines of code" in readme, total
    assert total < 200


@pytest.mark.slow  # over 1 s: the full suite runs it
def test_build_draw_explain_and_verify(tmp_path) -> None:
    args = ("--roadmap", "repvgg", "--upto", "branch_identity")
    data = json.loads(cli("build", *args, "--format", "json"))
    assert data["name"] == "repvgg.branch_identity" and data["params"] == 9_108_968
    assert data["deploy_params"] == 8_309_384  # the paper's 8.30 M for RepVGG-A0
    cli("draw", *args, "--part", "stages.2.blocks.1", "--out", tmp_path / "b.svg")
    svg = (tmp_path / "b.svg").read_text()
    assert svg.count(">BN<") == 3 and ">identity<" in svg
    text = cli("explain", "branch_identity", "--roadmap", "repvgg", "--no-latency")
    assert "75.14% top-1" in text and "4 + 3 + 1 = 8" in text
    assert "equal" in cli("verify", "--roadmap", "repvgg")


@SLOW
@pytest.mark.heavy
def test_train_table_latency_walkthrough_and_timm(tmp_path) -> None:
    results = tmp_path / "results"
    tiny = ["--data", "synthetic:16", "--epochs", "1", "--batch-size", "8", "--img-size", "32"]
    for step in ("vgg_a0", "branch_identity"):
        cli("train", "--roadmap", "repvgg", "--upto", step, *tiny, "--workers", "0", "--quiet",
            "--results", results)  # fmt: skip
    (folder,) = (results / "synthetic-16").glob("*/repvgg.vgg_a0/seed0")
    label = folder.parents[1].name
    table = cli("table", "--roadmap", "repvgg", "--data", "synthetic:16", "--recipe", label,
                "--no-latency", "--results", results, "--format", "json")  # fmt: skip
    rows = json.loads(table)["rows"]
    assert [r["top1"] is not None for r in rows] == [True, False, True]
    assert len({r["deploy_param_count"] for r in rows}) == 1  # the branches cost nothing deployed
    latency = cli("latency", "--roadmap", "repvgg", "--upto", "branch_identity", "--iters", "1",
                  "--img-size", "32", "--format", "json")  # fmt: skip
    assert json.loads(latency)["records"][0]["median_ms"] > 0
    figure = tmp_path / "roadmap.svg"
    cli("plot", "--roadmap", "repvgg", "--data", "synthetic:16", "--recipe", label,
        "--results", results, "--iters", "1", "--out", figure)  # fmt: skip
    assert "Paper: top-1 after each step" in figure.read_text()  # no speed column to plot
    page = tmp_path / "w.html"
    cli("walkthrough", "--roadmap", "repvgg", "--no-latency", "--out", page)
    assert all(f'id="{step}"' in page.read_text() for step in STEPS)
    roadmap.register_timm_models()
    net = timm.create_model("roadmap_repvgg_branch_identity", num_classes=3)
    assert net.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 3)


@SLOW
def test_installed_it_is_found_by_its_entry_point(tmp_path) -> None:
    """pip installs the package (no dependencies, no index: it needs only roadmap, here);
    a fresh `roadmap` then finds the roadmap without --plugin."""
    target, source = tmp_path / "site", tmp_path / "source"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("__pycache__"))  # builds there
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--target", str(target), str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(REPO)])}
    done = subprocess.run(
        [sys.executable, "-m", "roadmap", "steps", "--roadmap", "repvgg", "--format", "json"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [s["name"] for s in json.loads(done.stdout)] == STEPS


def test_a_roadmap_without_a_family_says_so() -> None:
    result = runner.invoke(app, [*PLUGIN, "build", "--roadmap", "repvgg", "--size", "m1_5"])
    assert result.exit_code == 2
    assert "the repvgg roadmap has no family" in result.output
    table = runner.invoke(app, [*PLUGIN, "table", "--roadmap", "repvgg", "--family"])
    assert table.exit_code == 2 and "has no family" in table.output
