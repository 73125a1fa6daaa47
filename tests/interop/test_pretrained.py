"""Starting weights: timm's published weights mapped onto ours, and --init from any state dict.

Nothing here downloads: each test builds timm's model with random weights (and realistic
BatchNorm statistics), saves its state dict in timm's own key names, and loads that file the
way timm loads a local file (``pretrained_cfg_overlay=dict(file=...)``, ``--pretrained-file``).
"""

import json
from pathlib import Path

import pytest
import timm
import torch
from typer.testing import CliRunner

import roadmap
from roadmap.arch.selection import Selection
from roadmap.cli import app
from roadmap.errors import RoadmapError
from roadmap.interop.pretrained import copy_by_order, load_state
from tests.helpers import SLOW, calibrate_bn, make_image_folder

runner = CliRunner()
roadmap.register_timm_models()
pytestmark = pytest.mark.usefixtures("one_thread")


class WeightFiles(dict):
    """timm-format weight files of the endpoints (random, with calibrated BN statistics and
    non-trivial LayerNorms and layer scales), each written the first time a test asks."""

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = folder

    def __missing__(self, name: str) -> Path:
        torch.manual_seed(0)
        model = calibrate_bn(timm.create_model(name), img_size=64)
        self[name] = self.folder / f"{name}.pth"
        torch.save(model.state_dict(), self[name])
        return self[name]


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> WeightFiles:
    return WeightFiles(tmp_path_factory.mktemp("weights"))


def reference(name: str, path: Path) -> torch.nn.Module:
    overlay = {"file": str(path)}
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay).eval()


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("roadmap_mobilenetv3_large", "mobilenetv3_large_100"),
        ("roadmap_alternating_se", "repvit_m0_9"),
        pytest.param("roadmap_convnext_resnet50", "resnet50", marks=SLOW),
        ("roadmap_convnext_separate_downsampling", "convnext_tiny"),  # LayerNorms, layer scales
    ],
)
def test_timm_loads_its_own_file_into_our_model(ours: str, theirs: str, weights) -> None:  # noqa: ANN001
    """`timm.create_model(ours, pretrained=True, pretrained_cfg_overlay=dict(file=...))` gives
    exactly timm's predictions (RepViT's two distillation heads averaged, as timm evaluates)."""
    overlay = {"file": str(weights[theirs])}
    model = timm.create_model(ours, pretrained=True, pretrained_cfg_overlay=overlay).eval()
    expected_model = reference(theirs, weights[theirs])
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        expected = expected_model(x)
        assert expected.std() > 0.1  # realistic logits, not zeros against zeros
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
        # folding BN reorders fp32 sums: ~1e-6 of the logits' scale in the mobile networks, up
        # to ~3e-5 through ResNet-50's 53 folds; a wrong fold is orders of magnitude larger
        scale = expected.abs().max().item()
        torch.testing.assert_close(roadmap.fuse(model)(x), expected, rtol=0, atol=1e-4 * scale)


def test_layers_that_do_not_map_are_one_clear_error(weights) -> None:  # noqa: ANN001
    widen = roadmap.build_model("widen", roadmap="repvit")
    with pytest.raises(RoadmapError, match="the weights do not map"):
        copy_by_order(widen, reference("mobilenetv3_large_100", weights["mobilenetv3_large_100"]))


def runner_ok(args: list) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow  # over 1 s: the full suite runs it
def test_build_and_eval_with_pretrained_weights(weights) -> None:  # noqa: ANN001
    file = weights["repvit_m0_9"]
    out = runner_ok(
        ["build", "--upto", "alternating_se", "--pretrained", "--pretrained-file", file]
    )
    assert "tensors from timm:repvit_m0_9" in " ".join(out.split())
    scores = json.loads(
        runner_ok(
            ["eval", "--upto", "alternating_se", "--pretrained", "--pretrained-file", file]
            + ["--data", "synthetic:8", "--format", "json"]
        )
    )
    assert scores["weights"].startswith("timm:repvit_m0_9") and scores["images"] == 2
    assert scores["top1"] == scores["fused_top1"] and scores["fused_disagreements"] == 0


def test_eval_with_pretrained_weights_needs_their_classes(weights, tmp_path) -> None:  # noqa: ANN001
    images = make_image_folder(tmp_path / "data")
    file = weights["mobilenetv3_large_100"]
    result = runner.invoke(
        app,
        ["eval", "--upto", "mobilenetv3_large", "--pretrained", "--pretrained-file", str(file)]
        + ["--data", f"imagefolder:{images}"],
    )
    assert result.exit_code == 2 and "fine-tune it first" in result.output


@pytest.mark.slow
def test_fine_tune_from_pretrained_then_from_a_checkpoint(weights, tmp_path) -> None:  # noqa: ANN001
    """The transfer-learning path: ImageNet weights -> a 2-class ImageFolder; then --init."""
    images = make_image_folder(tmp_path / "data")
    out = tmp_path / "results"
    common = ["--data", f"imagefolder:{images}", "--epochs", "1", "--batch-size", "8"]
    common += ["--quiet", "--workers", "0", "--out", out]
    file = weights["mobilenetv3_large_100"]
    runner_ok(
        ["train", "--upto", "mobilenetv3_large", "--pretrained", "--pretrained-file", file, *common]
    )
    (metrics,) = out.glob(
        "*/*+pretrained-mobilenetv3_large_100/mobilenetv3_large/seed0/metrics.json"
    )
    record = json.loads(metrics.read_text())
    assert record["init"]["source"].startswith("timm:mobilenetv3_large_100")
    assert record["init"]["classifier"] is False  # 1000 ImageNet classes, 2 here: a fresh one
    assert record["init"]["skipped"] == ["head.classifier.weight", "head.classifier.bias"]

    last = metrics.parent / "last.pt"
    runner_ok(["train", "--upto", "mobilenetv3_large", "--init", last, "--seed", "1", *common])
    (again,) = out.glob("*/*+init-*/mobilenetv3_large/seed1/metrics.json")
    init = json.loads(again.read_text())["init"]
    assert init["classifier"] is True and init["skipped"] == []


def test_init_loads_matching_names_and_says_what_it_did_not(tmp_path) -> None:
    source = roadmap.build_model("alternating_se", num_classes=10, roadmap="repvit")
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    target = roadmap.build_model("alternating_se", num_classes=3, roadmap="repvit")
    loaded = load_state(target, path)
    assert not loaded.classifier and "head.classifier.fc.weight" in loaded.skipped
    assert torch.equal(target.stem[0].conv.weight, source.stem[0].conv.weight)
    torch.save({"unrelated": torch.zeros(3)}, path)
    with pytest.raises(RoadmapError, match="nothing in .* fits this network"):
        load_state(target, path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--pretrained", "--init", "x.pt"], "give --pretrained or --init, not both"),
        (["train", "--pretrained-file", "x.pth"], "--pretrained-file goes with --pretrained"),
        (["eval", "--upto", "gelu"], "give --checkpoint PATH or --pretrained"),
        (["train", "--upto", "gelu", "--pretrained"], "no published weights fit gelu"),
    ],
)
def test_weight_options_that_do_not_fit(args: list, message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and message in result.output, result.output


def test_a_weights_file_of_another_model_is_named(weights) -> None:  # noqa: ANN001
    file = weights["mobilenetv3_large_100"]
    result = runner.invoke(
        app, ["build", "--upto", "alternating_se", "--pretrained", "--pretrained-file", str(file)]
    )
    assert (
        result.exit_code == 2 and "cannot load repvit_m0_9's weights from the file" in result.output
    )


def test_the_pretrained_network_is_the_one_timm_has() -> None:
    from roadmap.interop.pretrained import reference as ref

    assert ref(Selection.of("repvit", "mobilenetv3_large")) == "mobilenetv3_large_100"
    assert ref(Selection.of("repvit")) == "repvit_m0_9"
    assert ref(Selection.of("repvit", size="m1_5")) == "repvit_m1_5"
    assert ref(Selection.of("convnext", "resnet50")) == "resnet50.tv_in1k"
    assert ref(Selection.of("convnext")) == "convnext_tiny.fb_in1k"
    with pytest.raises(RoadmapError, match="--upto resnet50 or --upto separate_downsampling"):
        ref(Selection.of("convnext", "gelu"))
    with pytest.raises(RoadmapError):
        ref(Selection.of("repvit", size="m0_6"))  # the official README's M0.6 is not in timm


@pytest.mark.parametrize(
    "two_heads", [pytest.param(True, marks=SLOW), False], ids=["two heads", "one head"]
)
def test_repvit_weights_in_either_head_form_load(two_heads: bool, tmp_path: Path) -> None:
    """timm's published RepViT weights carry a distillation head; a file saved from
    repvit_m0_9(distillation=False), what fine-tuning without distillation leaves, does not.
    Both load: into our one head (the two averaged), and into a distilled student head for
    head (the one head into both)."""
    from roadmap.arch.builder import build
    from roadmap.arch.spec import replace
    from roadmap.interop.pretrained import load_pretrained

    torch.manual_seed(0)
    theirs = calibrate_bn(timm.create_model("repvit_m0_9", distillation=two_heads), img_size=64)
    path = tmp_path / "repvit.pth"
    torch.save(theirs.state_dict(), path)
    spec = roadmap.build_spec("alternating_se", roadmap="repvit")
    x = torch.randn(2, 3, 64, 64)
    for head in (spec.head, replace(spec.head, distillation=True)):
        ours = build(replace(spec, head=head))
        loaded = load_pretrained(ours, Selection.of("repvit", "alternating_se"), str(path))
        assert loaded.classifier and not loaded.skipped
        with torch.no_grad():
            torch.testing.assert_close(ours.eval()(x), theirs(x), rtol=1e-5, atol=1e-5)
