"""A researcher's own step, loaded from a file, works like the paper's steps."""

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import roadmap
from roadmap.arch import registry
from roadmap.cli import app
from tests.helpers import REPO, fails_in_one_line

PLUGIN = str(REPO / "examples" / "relu_step.py")
runner = CliRunner()


pytestmark = pytest.mark.usefixtures("restore_registry")  # plugin steps must not leak


BLOCK_PLUGIN = '''
"""A block kind of a plugin's own, and a step that uses it (all through the public API)."""
from torch import nn

from roadmap import BlockKind, map_blocks, register_block_kind, register_step, replace
from roadmap.arch import anatomy
from roadmap.arch.layers import ConvNorm


class Lite(nn.Module):
    def __init__(self, in_ch, spec):
        super().__init__()
        self.token_mixer = ConvNorm(in_ch, in_ch, spec.kernel_size, spec.stride, groups=in_ch)
        self.channel_mixer = ConvNorm(in_ch, spec.out_channels, 1, act=spec.activation)

    def forward(self, x):
        return self.channel_mixer(self.token_mixer(x))


def draw(b, in_ch, fused):
    layers = anatomy.depthwise(b.kernel_size, in_ch, fused, stride=b.stride)
    return anatomy.Seq(layers + anatomy.conv_norm(1, in_ch, b.out_channels, fused))


register_block_kind(BlockKind(
    "lite", build=Lite, draw=draw, title="DW conv -> 1x1 conv, no expansion",
    reads=("out_channels", "kernel_size", "stride", "activation"),
    parts={"token_mixer": "token mixer", "channel_mixer": "channel mixer"},
))


@register_step("lite_blocks", title="RepViT blocks become lite", section="ext", roadmap="repvit")
def lite_blocks(spec):
    return map_blocks(spec, lambda _p, b: replace(b, kind="lite") if b.kind == "repvit" else b)
'''


def test_a_plugin_file_adds_a_block_kind_every_command_uses(tmp_path, restore_registry):
    plugin = tmp_path / "lite.py"
    plugin.write_text(BLOCK_PLUGIN)
    network = ["--upto", "lite_blocks"]  # the whole roadmap, then the plugin step
    listed = runner.invoke(app, ["--plugin", str(plugin), "blocks", "--format", "json"])
    assert "lite" in [k["name"] for k in json.loads(listed.output)]
    built = runner.invoke(app, ["build", *network, "--format", "json", "--img-size", "64"])
    data = json.loads(built.output)
    assert data["spec"]["stages"][2]["blocks"][0]["kind"] == "lite"
    assert data["deploy_params"] < data["params"]  # its BNs fold
    out = tmp_path / "lite.svg"
    args = ["draw", *network, "--part", "stages.2.blocks.0", "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    assert "1x1 conv 192-&gt;192" in out.read_text()


def test_plugin_step_registers_after_the_papers():
    registry.load_plugin(PLUGIN)
    assert roadmap.list_steps("repvit")[-1] == "relu"
    assert "alternating_se" in roadmap.resolve_steps(
        "relu", roadmap="repvit"
    )  # a prefix includes the roadmap
    spec = roadmap.build_spec(steps=["alternating_se", "relu"], roadmap="repvit")
    assert {b.activation for _, b in spec.iter_blocks()} <= {"relu", "none"}


def test_plugin_works_in_steps_build_and_explain():
    out = runner.invoke(app, ["--plugin", PLUGIN, "steps", "--format", "json"]).stdout
    assert json.loads(out)[-1]["name"] == "relu"
    result = runner.invoke(
        app, ["--plugin", PLUGIN, "build", "--steps", "gelu,relu", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    changes = json.loads(result.stdout)["changes"]
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
    rows = json.loads(result.stdout)["rows"]
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
        "register_step('gelu', title='again', section='§x', roadmap='repvit')(lambda spec: spec)\n"
    )
    result = runner.invoke(app, ["--plugin", str(clash), "steps"])
    assert result.exit_code == 2
    assert "step 'gelu' is already registered" in result.output


ROADMAP_PLUGIN = '''
"""A roadmap of a plugin's own: a tiny network, and one step on it."""
from roadmap import (BlockSpec, HeadSpec, NetSpec, PaperColumn, Roadmap, StageSpec, map_blocks,
                     register_roadmap, register_step, replace)

register_roadmap(Roadmap(
    name="tiny", title="TinyNet -> TinyNet-GELU", citation="nobody, 2026", package=__name__,
    order=("tiny_base", "tiny_gelu"),
    accuracy=PaperColumn("paper top-1 %", "%", "made up"),
    references=(("tiny_gelu", "resnet18"),),  # wrong on purpose: `verify` must say so
))


@register_step("tiny_base", title="a tiny network", section="§1", base=True, roadmap="tiny")
def tiny_base():
    stage = lambda w: StageSpec(blocks=(BlockSpec("conv", w, 3, 2),))
    return NetSpec(stem=(BlockSpec("conv", 8, 3, 2),), stages=tuple(stage(w) for w in (8, 16)),
                   head=HeadSpec())


@register_step("tiny_gelu", title="GELU", section="§2", roadmap="tiny", paper_top1=50.0)
def tiny_gelu(spec):
    return map_blocks(spec, lambda _p, b: replace(b, activation="gelu"))
'''


def test_a_plugin_registers_a_whole_roadmap(tmp_path, restore_registry):
    plugin = tmp_path / "tiny.py"
    plugin.write_text(ROADMAP_PLUGIN)
    listed = runner.invoke(app, ["--plugin", str(plugin), "roadmaps", "--format", "json"])
    names = [r["name"] for r in json.loads(listed.stdout)]
    assert names[0] == "repvit" and {"convnext", "tiny"} <= set(names)  # the default first
    steps = runner.invoke(app, ["steps", "--roadmap", "tiny", "--format", "json"])
    assert [s["name"] for s in json.loads(steps.stdout)] == ["tiny_base", "tiny_gelu"]
    args = ["build", "--roadmap", "tiny", "--upto", "tiny_gelu", "--img-size", "32"]
    built = runner.invoke(app, [*args, "--format", "json"])
    assert built.exit_code == 0, built.output
    assert any("activation: relu -> gelu" in c for c in json.loads(built.stdout)["changes"])
    table = runner.invoke(app, ["table", "--roadmap", "tiny", "--no-latency", "--format",
                                "json"])  # fmt: skip
    rows = json.loads(table.stdout)["rows"]
    assert [r["name"] for r in rows] == ["tiny.tiny_base", "tiny.tiny_gelu"]  # prefixed
    assert rows[1]["paper_top1"] == 50.0
    # the same step name in the default roadmap is another step, or none: then the error
    # names the roadmap that has it
    missing = runner.invoke(app, ["build", "--upto", "tiny_gelu"])
    assert missing.exit_code == 2 and "add --roadmap tiny" in missing.output
    wrong = runner.invoke(app, ["steps", "--roadmap", "tine"])
    assert wrong.exit_code == 2 and "did you mean 'tiny'" in wrong.output
    verified = runner.invoke(app, ["verify", "--roadmap", "tiny", "--format", "json"])
    assert verified.exit_code == 1, verified.output  # a finding, not a usage error
    (end,) = json.loads(verified.stdout)
    assert end["reference"] == "resnet18" and not end["equal"]
    assert end["difference"].startswith("layer 0: ('Conv2d', (8, 3, 3, 3)")


def test_a_plugin_folder_must_be_a_package(tmp_path):
    (tmp_path / "not_a_package").mkdir()
    fails_in_one_line(["--plugin", tmp_path / "not_a_package", "steps"], "is not a Python package")
    (tmp_path / "my-steps").mkdir()
    (tmp_path / "my-steps" / "__init__.py").write_text("")
    fails_in_one_line(["--plugin", tmp_path / "my-steps", "steps"], "cannot be a package's name")


@pytest.mark.slow  # over 1 s: the full suite runs it
def test_an_installed_roadmap_package_is_found_and_typos_stay_fast(tmp_path):
    """A user's roadmap package installed with pip is an entry point in a dist-info folder on
    sys.path: here one is made by hand. Its steps are listed beside the built-in roadmaps, its
    block kind is imported only when a spec uses it, and a mistyped name is refused before
    torch loads."""
    package = tmp_path / "site" / "tiny_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(ROADMAP_PLUGIN.replace('"tiny"', '"tinypkg"'))
    info = tmp_path / "site" / "tiny_pkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-pkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[roadmap.steps]\ntinypkg = tiny_pkg\n")
    code = (
        "import sys\nfrom roadmap.cli import main\n"
        "sys.argv = ['roadmap', 'explain', 'tiny_gelz', '--roadmap', 'tinypkg']\n"
        "try:\n    main()\nexcept SystemExit:\n"
        "    loaded = sorted(m for m in ('torch', 'timm', 'fvcore') if m in sys.modules)\n"
        "sys.argv = ['roadmap', 'steps', '--roadmap', 'tinypkg', '--format', 'json']\n"
        "try:\n    main()\nexcept SystemExit:\n    print(loaded)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    listed, torch_loaded = result.stdout.rsplit("\n", 2)[0], result.stdout.split("\n")[-2]
    assert [s["name"] for s in json.loads(listed)] == ["tiny_base", "tiny_gelu"], result.stderr
    assert torch_loaded == "[]"
    assert "did you mean 'tiny_gelu'" in result.stderr


RUNTIME_AND_DATA_PLUGIN = '''
"""A runtime and a data source of a plugin's own."""
import torch
from torch.utils.data import TensorDataset

from roadmap.measure.runtimes import Runtime, register_runtime
from roadmap.train.sources import DataKind, Datasets, register_data_kind


def time_inference(model, x, target):
    def run():
        with torch.inference_mode():
            return model(x)
    return run


def export_pickle(model, example, out, int8):
    torch.save(model, out)
    loaded = torch.load(out, weights_only=False).eval()
    return torch.no_grad()(loaded), f"torch.load (torch {torch.__version__})"


register_runtime(Runtime(
    "inference_mode", "torch eager under torch.inference_mode", timer=time_inference,
    exporter=export_pickle, format="pickle", suffix=".pkl", in_torch=True,
    conditions=lambda: {"mode": "inference_mode"},
))


class Bright(TensorDataset):
    """Class k: images of brightness k (learnable in one epoch)."""

    def __init__(self, n, size, seed):
        g = torch.Generator().manual_seed(seed)
        targets = torch.arange(n) % 4
        images = targets.float()[:, None, None, None] - 1.5 + 0.1 * torch.randn(n, 3, size, size,
                                                                                generator=g)
        super().__init__(images, targets)
        self.targets = targets.tolist()


def open_bright(request):
    size = request.img_size
    return Datasets(Bright(256, size, 0), Bright(64, size, 1), 4, request.source)


register_data_kind(DataKind("bright", "brightness is the class", open_bright, in_memory=True))
'''


@pytest.mark.slow  # over 1 s: the full suite runs it
def test_a_plugins_runtime_and_data_source_are_listed_timed_exported_and_trained_on(
    tmp_path, restore_registry
):
    plugin = tmp_path / "extras.py"
    plugin.write_text(RUNTIME_AND_DATA_PLUGIN)
    load = ["--plugin", str(plugin)]
    listed = runner.invoke(app, [*load, "runtimes", "--format", "json"])
    row = next(r for r in json.loads(listed.stdout) if r["name"] == "inference_mode")
    assert row["format"] == "pickle" and row["timed"]
    sources = runner.invoke(app, [*load, "sources", "--format", "json"])
    assert "bright" in [r["name"] for r in json.loads(sources.stdout)]
    network = ["--upto", "gelu", "--img-size", "32", "--num-classes", "4"]
    timed = runner.invoke(app, ["latency", *network, "--backend", "inference_mode", "--iters",
                                "2", "--warmup", "1", "--format", "json"])  # fmt: skip
    assert timed.exit_code == 0, timed.output
    (record,) = json.loads(timed.stdout)["records"]
    assert record["conditions"]["backend"] == "inference_mode"
    assert record["conditions"]["details"] == {"mode": "inference_mode"}
    out = tmp_path / "gelu.pkl"
    exported = runner.invoke(app, ["export", *network, "--format", "pickle", "--out", str(out)])
    assert exported.exit_code == 0, exported.output
    assert out.is_file() and "torch.load" in exported.output
    trained = runner.invoke(app, ["train", "--upto", "gelu", "--data", "bright", "--recipe",
                                  "quick", "--epochs", "1", "--set", "img_size=32", "--quiet",
                                  "--results", str(tmp_path / "results")])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    (stored,) = (tmp_path / "results").rglob("metrics.json")
    assert json.loads(stored.read_text())["data"] == "bright"
    typo = runner.invoke(app, ["latency", "--upto", "gelu", "--backend", "inference_mod"])
    assert typo.exit_code == 2 and "did you mean 'inference_mode'" in typo.output


WRONG_WIDTH_PLUGIN = """
from torch import nn
from roadmap import BlockKind, Box, Seq, register_block_kind

register_block_kind(BlockKind(
    "wide_by_one", title="a 1x1 conv one channel wider than it says",
    build=lambda in_ch, b: nn.Conv2d(in_ch, b.out_channels + 1, 1),
    draw=lambda b, in_ch, fused: Seq((Box("conv", "1x1"),)),
    reads=("out_channels",),
))
"""


def test_a_plugin_kind_whose_module_breaks_its_spec_is_named_at_its_path(
    tmp_path, restore_registry
):
    """A kind's module that outputs another width than its block says used to fail much later,
    in the next block's convolution, with a 200-line traceback from the MAC count."""
    plugin = tmp_path / "wrong.py"
    plugin.write_text(WRONG_WIDTH_PLUGIN)
    data = roadmap.build_spec("gelu", roadmap="repvit").to_dict()
    data["stages"][1]["blocks"][0] = {"kind": "wide_by_one", "out_channels": 40}
    (tmp_path / "spec.json").write_text(json.dumps(data))
    fails_in_one_line(
        ["--plugin", plugin, "build", "--spec", tmp_path / "spec.json"],
        "stages.1.blocks.0: a wide_by_one block says out_channels 40 but its module (from "
        "roadmap_plugin_",
    )
