"""Export of the deploy form: ONNX checked with onnxruntime, TorchScript reloaded, ExecuTorch run
by its runtime, Core ML converted and its structure read back."""

import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import roadmap
from roadmap.arch.selection import Selection
from roadmap.cli import app
from roadmap.errors import RoadmapError
from roadmap.measure.export import export_model
from roadmap.measure.runtimes.onnxruntime import run_onnx
from tests.helpers import calibrate_bn

IMG = 64  # the exported graph is resolution-independent; small inputs keep this fast
# fp32 re-association error is ~1e-6 of the logit scale; a broken export is orders larger.
RTOL = 1e-4
runner = CliRunner()
MOBILE_MISSING = 'ExecuTorch is not installed (pip install -e ".[mobile]")'
COREML_MISSING = 'coremltools is not installed (pip install -e ".[coreml]")'


pytestmark = pytest.mark.usefixtures("one_thread")


def assert_matches(got: torch.Tensor, expected: torch.Tensor) -> None:
    assert got.shape == expected.shape
    scale = max(1.0, expected.abs().max().item())
    assert (got - expected).abs().max().item() <= RTOL * scale


def deploy_logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return roadmap.fuse(model)(x)


@pytest.mark.slow
@pytest.mark.parametrize("step", roadmap.list_steps("repvit"))
def test_onnx_of_every_step_matches_torch(step: str, tmp_path: Path) -> None:
    model = calibrate_bn(roadmap.build_model(step, num_classes=10, roadmap="repvit"))
    result = export_model(model, "onnx", tmp_path / "m.onnx", img_size=IMG)
    x = torch.randn(3, 3, IMG, IMG)  # another batch size: the batch axis is dynamic
    assert_matches(run_onnx(result.path, x), deploy_logits(model, x))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.load")  # deprecated, not gone
def test_torchscript_export_reloads_and_matches(tmp_path: Path) -> None:
    model = calibrate_bn(roadmap.build_model("kernel_3x3", num_classes=10, roadmap="repvit"))
    result = export_model(model, "torchscript", tmp_path / "sub" / "m.pt", img_size=IMG)
    assert result.max_abs_diff is not None and result.path.is_file()
    loaded = torch.jit.load(str(result.path))
    x = torch.randn(1, 3, IMG, IMG)
    with torch.no_grad():
        assert_matches(loaded(x), deploy_logits(model, x))


def test_coreml_without_coremltools_says_how_to_install(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setitem(sys.modules, "coremltools", None)  # makes `import coremltools` fail
    model = roadmap.build_model("gelu", num_classes=10, roadmap="repvit")
    with pytest.raises(RoadmapError, match=r'pip install -e "\.\[coreml\]"'):
        export_model(model, "coreml", tmp_path / "m.mlpackage", img_size=IMG)


def test_coreml_needs_an_mlpackage_path(tmp_path: Path) -> None:
    with pytest.raises(RoadmapError, match=".mlpackage"):
        export_model(
            roadmap.build_model("gelu", roadmap="repvit"), "coreml", tmp_path / "m.mlmodel"
        )


def test_cli_export_onnx_default_path_matches_torch(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    args = ["export", "--upto", "simple_classifier", "--format", "onnx", "--img-size", str(IMG)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    path = tmp_path / "simple_classifier.onnx"
    assert path.is_file() and "outputs match torch" in result.stdout
    torch.manual_seed(0)  # the seed conftest set before the CLI built its model
    model = roadmap.build_model("simple_classifier", roadmap="repvit")
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


BREAKAGES = {
    "zeros": lambda y: torch.zeros_like(y),
    "one-percent-scale": lambda y: y * 1.01,
    "classes-shifted": lambda y: y.roll(1, dims=-1),
}
# Every breakage for the quick formats. The check is one function for every format, applied to
# what the format's runtime returns; that ExecuTorch's check reads the lowered program's outputs
# is test_executorch_program_runs_in_its_runtime_and_matches_torch's (a broken ExecuTorch
# exporter here cost 13 CPU-seconds of lowering to prove the same function fails again).
# The fast tier checks ONNX; the full suite every breakage of TorchScript too.
BROKEN = [("onnx", b) for b in BREAKAGES]
BROKEN += [pytest.param("torchscript", b, marks=pytest.mark.slow) for b in BREAKAGES]


@pytest.mark.parametrize(("fmt", "breakage"), BROKEN)
@pytest.mark.filterwarnings("ignore:`torch.jit")
def test_a_broken_export_is_caught(fmt: str, breakage: str, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """The check compares with torch relative to how much the logits vary, so an export that
    outputs zeros, scales every logit by 1 %, or shifts the classes cannot pass it, even on a
    freshly built network whose logits are small."""
    import dataclasses

    from roadmap.measure import runtimes

    runtime = runtimes.for_format(fmt)
    broken = BREAKAGES[breakage]

    def broken_exporter(model, example, out, int8):  # noqa: ANN001, ANN202
        run, checked_with = runtime.exporter(model, example, out, int8)
        return (lambda x: broken(run(x))), checked_with

    replaced = dataclasses.replace(runtime, exporter=broken_exporter)
    monkeypatch.setitem(runtimes.RUNTIMES._items, runtime.name, replaced)
    model = roadmap.build_model("gelu", num_classes=10, roadmap="repvit")
    with pytest.raises(RoadmapError, match=f"the exported {fmt} model disagrees with torch"):
        export_model(model, fmt, tmp_path / "m", img_size=IMG)


def test_a_model_whose_logits_do_not_vary_cannot_be_checked(tmp_path: Path) -> None:
    model = roadmap.build_model("simple_classifier", num_classes=10, roadmap="repvit")
    torch.nn.init.zeros_(model.get_classifier().fc.weight)
    with pytest.raises(RoadmapError, match="logits do not vary with the input"):
        export_model(model, "onnx", tmp_path / "m.onnx", img_size=IMG)


# --- ExecuTorch ---------------------------------------------------------------------------


def small_network() -> torch.nn.Module:
    """RepViT-M0.9 at a quarter of its widths and a tenth of its depths: every kind of layer
    the roadmap's last step has (RepVGG token mixers, SE, FFN, the deeper downsampling, the BN
    classifier), and lowering to ExecuTorch takes seconds instead of 13."""
    return roadmap.build(Selection.of("repvit", "alternating_se", size="w0.25d0.1").spec(10))


@pytest.mark.slow
def test_executorch_program_runs_in_its_runtime_and_matches_torch(tmp_path: Path) -> None:
    """The .pte file, loaded by the ExecuTorch runtime on its own, gives torch's logits; the
    program takes the export's batch exactly (static shapes, as on a phone)."""
    pytest.importorskip("executorch", reason=MOBILE_MISSING)
    from roadmap.measure.runtimes.executorch import load as load_executorch

    model = calibrate_bn(small_network())
    result = export_model(model, "executorch", tmp_path / "sub" / "m.pte", img_size=IMG, batch=2)
    assert result.path.read_bytes()[4:8] == b"ET12"  # the ExecuTorch flatbuffer identifier
    assert result.max_abs_diff is not None and "XNNPACK" in result.checked_with
    x = torch.randn(2, 3, IMG, IMG)
    forward = load_executorch(result.path, threads=1)
    assert_matches(forward(x), deploy_logits(model, x))


@pytest.mark.slow
@pytest.mark.heavy
def test_an_int8_program_is_quantized_and_checked_against_float32(tmp_path: Path) -> None:
    """--int8: the program really is quantized (it differs from torch by more than float32
    rounding could) and its logits' SQNR against torch's stays above INT8_MIN_SQNR_DB."""
    pytest.importorskip("executorch", reason=MOBILE_MISSING)
    from roadmap.measure.export import INT8_MIN_SQNR_DB, TOLERANCE

    model = calibrate_bn(small_network())
    result = export_model(model, "executorch", tmp_path / "q.pte", img_size=IMG, int8=True)
    assert "int8" in result.checked_with
    assert result.max_abs_diff > TOLERANCE * result.logit_scale  # really quantized
    assert result.sqnr_db > INT8_MIN_SQNR_DB


@pytest.mark.slow
def test_the_int8_check_catches_a_wrong_scale() -> None:
    """The int8 check, on the quantized graph as torch runs it (the program XNNPACK lowers):
    right, its SQNR is above the bound; with every activation quantizer's scale x 8, below
    it, and the check must say so."""
    pytest.importorskip("executorch", reason=MOBILE_MISSING)
    from roadmap.measure.export import ExportResult, check_int8, sqnr_db
    from roadmap.measure.runtimes.executorch import quantize_int8

    deploy = roadmap.fuse(calibrate_bn(small_network()))
    x = torch.randn(1, 3, IMG, IMG)
    check = torch.randn(3, 3, IMG, IMG)
    with torch.no_grad():
        expected = deploy(check)
    spread = float(expected.max() - expected.min())

    def result_of(graph: torch.nn.Module) -> ExportResult:
        with torch.no_grad():
            got = torch.cat([graph(image[None]) for image in check])
        diff = float((got - expected).abs().max())
        ratio = sqnr_db(expected, got)
        return ExportResult(Path("q.pte"), "executorch", x.shape, diff, spread, "", ratio)

    graph = quantize_int8(deploy, x)
    check_int8(result_of(graph))
    for node in graph.graph.nodes:
        if node.op == "call_function" and "quantize_per_tensor" in str(node.target):
            node.args = (node.args[0], node.args[1] * 8, *node.args[2:])
    graph.recompile()
    with pytest.raises(RoadmapError, match="int8 program disagrees with torch"):
        check_int8(result_of(graph))


def test_int8_is_executorchs() -> None:
    with pytest.raises(RoadmapError, match="use --format executorch"):
        export_model(small_network(), "onnx", Path("x.onnx"), img_size=IMG, int8=True)
    result = runner.invoke(app, ["latency", "--upto", "gelu", "--int8"])
    assert result.exit_code == 2 and "add --backend executorch" in result.output


@pytest.fixture
def no_executorch(monkeypatch) -> None:  # noqa: ANN001
    """Make every ``import executorch...`` fail, as on a machine without the [mobile] extra."""
    for name in [n for n in sys.modules if n == "executorch" or n.startswith("executorch.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "executorch", None)


@pytest.mark.usefixtures("no_executorch")
def test_executorch_missing_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(
        RoadmapError, match=r'ExecuTorch is not installed: pip install -e "\.\[mobile\]"'
    ):
        export_model(
            roadmap.build_model("gelu", roadmap="repvit"),
            "executorch",
            tmp_path / "m.pte",
            img_size=IMG,
        )
    assert not (tmp_path / "m.pte").exists()


@pytest.mark.usefixtures("no_executorch")
def test_cli_executorch_missing_is_one_line(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)  # the default output is NAME.pte in the current folder
    for args in (["export", "--format", "executorch"], ["latency", "--backend", "executorch"]):
        result = runner.invoke(app, [*args, "--upto", "gelu", "--img-size", str(IMG)])
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("error: ExecuTorch is not installed")
        assert 'pip install -e ".[mobile]"' in result.stderr


# --- Core ML ------------------------------------------------------------------------------


# Steps that together hold every layer the converter sees (each conversion costs 2-3 s):
# MobileNetV3-L's (hard-swish, ReLU, hard-sigmoid SE, its two-conv head), GELU in them, the
# RepViT block beside MobileNetV3's stem and head, and RepViT-M0.9, which holds everything the
# later steps bring (early-conv stem, deeper downsampling, BN-linear classifier, sigmoid SE).
# The steps in between change widths, depths or kernel sizes, which the structure check does
# not depend on.
COREML_FORMS = ("mobilenetv3_large", "gelu", "separate_mixers", "alternating_se")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")  # coremltools warns about versions it has not tested
@pytest.mark.parametrize("step", COREML_FORMS)
def test_coreml_package_of_each_layer_set_holds_the_fused_model(step: str, tmp_path: Path) -> None:
    """Core ML runs only on macOS, so the package is checked by its structure, read back from
    disk: the input and output, and one conv / linear op per layer of the fused model."""
    pytest.importorskip("coremltools", reason=COREML_MISSING)
    from roadmap.measure.runtimes.coreml import coreml_structure

    model = roadmap.build_model(step, num_classes=10, roadmap="repvit")
    result = export_model(model, "coreml", tmp_path / f"{step}.mlpackage", img_size=IMG)
    assert result.max_abs_diff is None and "structure checked" in result.checked_with
    structure = coreml_structure(result.path)
    deploy = roadmap.fuse(model)
    assert structure.inputs == {"input": (1, 3, IMG, IMG)}
    assert structure.outputs == {"logits": (1, 10)}
    assert structure.ops["conv"] == sum(isinstance(m, torch.nn.Conv2d) for m in deploy.modules())
    assert structure.ops["linear"] == 1 and "batch_norm" not in structure.ops
    gelus = sum(type(m).__name__ == "GELU" for m in deploy.modules())  # torch's or timm's
    assert structure.ops.get("gelu", 0) == gelus  # the activation the roadmap chose survives


def test_coreml_structure_check_catches_a_package_that_is_not_the_fused_model() -> None:
    from roadmap.measure.runtimes.coreml import CoreMLStructure, check_coreml_structure

    deploy = roadmap.fuse(roadmap.build_model("gelu", num_classes=10, roadmap="repvit"))
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in deploy.modules())
    shape = (1, 3, IMG, IMG)
    good = CoreMLStructure({"input": shape}, {"logits": (1, 10)}, {"conv": convs, "linear": 1})
    check_coreml_structure(good, deploy, shape)
    bad = [
        CoreMLStructure(good.inputs, good.outputs, {"conv": convs - 1, "linear": 1}),
        CoreMLStructure(good.inputs, good.outputs, {**good.ops, "batch_norm": 3}),
        CoreMLStructure({"input": (1, 3, 32, 32)}, good.outputs, good.ops),
        CoreMLStructure(good.inputs, {"var_1": (1, 10)}, good.ops),
    ]
    for structure in bad:
        with pytest.raises(RoadmapError, match="does not hold the fused model"):
            check_coreml_structure(structure, deploy, shape)
