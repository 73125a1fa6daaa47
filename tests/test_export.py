"""Export of the deploy form: ONNX checked with onnxruntime, TorchScript reloaded, Core ML gated."""

import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import roadmap
from roadmap.cli import app
from roadmap.errors import RoadmapError
from roadmap.export import export_model, run_onnx
from tests.conftest import calibrate_bn

IMG = 64  # the exported graph is resolution-independent; small inputs keep this fast
# fp32 re-association error is ~1e-6 of the logit scale; a broken export is orders larger.
RTOL = 1e-4
runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")


def assert_matches(got: torch.Tensor, expected: torch.Tensor) -> None:
    assert got.shape == expected.shape
    scale = max(1.0, expected.abs().max().item())
    assert (got - expected).abs().max().item() <= RTOL * scale


def deploy_logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return roadmap.fuse(model)(x)


@pytest.mark.slow
@pytest.mark.parametrize("step", roadmap.list_steps())
def test_onnx_of_every_step_matches_torch(step: str, tmp_path: Path) -> None:
    model = calibrate_bn(roadmap.build_model(step, num_classes=10))
    result = export_model(model, "onnx", tmp_path / "m.onnx", img_size=IMG)
    x = torch.randn(3, 3, IMG, IMG)  # another batch size: the batch axis is dynamic
    assert_matches(run_onnx(result.path, x), deploy_logits(model, x))


@pytest.mark.filterwarnings("ignore:`torch.jit.load")  # deprecated, not gone
def test_torchscript_export_reloads_and_matches(tmp_path: Path) -> None:
    model = calibrate_bn(roadmap.build_model("kernel_3x3", num_classes=10))
    result = export_model(model, "torchscript", tmp_path / "sub" / "m.pt", img_size=IMG)
    assert result.max_abs_diff is not None and result.path.is_file()
    loaded = torch.jit.load(str(result.path))
    x = torch.randn(1, 3, IMG, IMG)
    with torch.no_grad():
        assert_matches(loaded(x), deploy_logits(model, x))


def test_coreml_without_coremltools_says_how_to_install(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setitem(sys.modules, "coremltools", None)  # makes `import coremltools` fail
    model = roadmap.build_model("gelu", num_classes=10)
    with pytest.raises(RoadmapError, match=r'pip install -e "\.\[coreml\]"'):
        export_model(model, "coreml", tmp_path / "m.mlpackage", img_size=IMG)


def test_coreml_needs_an_mlpackage_path(tmp_path: Path) -> None:
    with pytest.raises(RoadmapError, match=".mlpackage"):
        export_model(roadmap.build_model("gelu"), "coreml", tmp_path / "m.mlmodel")


def test_cli_export_onnx_default_path_matches_torch(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    args = ["export", "--upto", "simple_classifier", "--format", "onnx", "--img-size", str(IMG)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    path = tmp_path / "simple_classifier.onnx"
    assert path.is_file() and "outputs match torch" in result.stdout
    torch.manual_seed(0)  # the seed conftest set before the CLI built its model
    model = roadmap.build_model("simple_classifier")
    x = torch.randn(2, 3, IMG, IMG)
    assert_matches(run_onnx(path, x), deploy_logits(model, x))


def test_cli_export_to_an_unwritable_place_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = runner.invoke(app, ["export", "--upto", "gelu", "--out", str(blocker / "m.onnx")])
    assert result.exit_code == 2
    assert result.output.startswith("error:") and len(result.output.splitlines()) == 1


def test_cli_export_unknown_format_exits_2() -> None:
    result = runner.invoke(app, ["export", "--upto", "gelu", "--format", "tflite"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_cli_coreml_without_coremltools_prints_the_install_command(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setitem(sys.modules, "coremltools", None)
    result = runner.invoke(app, ["export", "--upto", "gelu", "--format", "coreml"])
    assert result.exit_code == 2
    assert 'pip install -e ".[coreml]"' in result.output  # brackets survive rich's markup


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize(
    "breakage",
    [lambda y: torch.zeros_like(y), lambda y: y * 1.01, lambda y: y.roll(1, dims=-1)],
    ids=["zeros", "one-percent-scale", "classes-shifted"],
)
@pytest.mark.filterwarnings("ignore:`torch.jit")
def test_a_broken_export_is_caught(fmt: str, breakage, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """The check compares with torch relative to how much the logits vary, so an export that
    outputs zeros, scales every logit by 1 %, or shifts the classes cannot pass it, even on a
    freshly built network whose logits are small."""
    from roadmap import export

    real = {"onnx": export._onnx, "torchscript": export._torchscript}[fmt]

    def broken_exporter(model, example, out):  # noqa: ANN001, ANN202
        run, checked_with = real(model, example, out)
        return (lambda x: breakage(run(x))), checked_with

    monkeypatch.setattr(export, f"_{fmt}", broken_exporter)
    with pytest.raises(RoadmapError, match=f"the exported {fmt} model disagrees with torch"):
        export_model(roadmap.build_model("gelu", num_classes=10), fmt, tmp_path / "m", img_size=IMG)


def test_a_model_whose_logits_do_not_vary_cannot_be_checked(tmp_path: Path) -> None:
    model = roadmap.build_model("simple_classifier", num_classes=10)
    torch.nn.init.zeros_(model.get_classifier().fc.weight)
    with pytest.raises(RoadmapError, match="logits do not vary with the input"):
        export_model(model, "onnx", tmp_path / "m.onnx", img_size=IMG)
