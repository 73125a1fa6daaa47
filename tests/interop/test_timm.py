"""Every step is a timm model, with what timm's train/validate/benchmark scripts use."""

import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from timm.data import resolve_data_config
from torch import nn

import roadmap
from roadmap.interop import timm_run
from roadmap.measure.counts import count_params
from roadmap_steps.repvit import FAMILY
from tests.helpers import representative

IMG = 64  # small inputs keep this fast


pytestmark = pytest.mark.usefixtures("one_thread")
roadmap.register_timm_models()  # explicit: importing roadmap registers nothing


def test_every_step_is_registered() -> None:
    expected = {f"roadmap_{step}" for step in roadmap.list_steps("repvit")}
    expected |= {f"roadmap_repvit_{size.label}" for size in FAMILY}
    expected |= {f"roadmap_convnext_{step}" for step in roadmap.list_steps(roadmap="convnext")}
    expected |= {f"roadmap_convnext_{size}" for size in ("t", "s", "b", "l")}
    others = set(roadmap.roadmap_names()) - {"repvit", "convnext"}  # installed packages'
    for other in others:
        expected |= {f"roadmap_{other}_{step}" for step in roadmap.list_steps(other)}
        expected |= {f"roadmap_{other}_{s.label}" for s in roadmap.get_roadmap(other).family}
    assert set(timm.list_models("roadmap_*")) == expected


@pytest.mark.parametrize("step", roadmap.list_steps("repvit"))
def test_timm_model_is_the_roadmap_prefix(step: str) -> None:
    model = timm.create_model(f"roadmap_{step}", num_classes=10)
    assert model.spec == roadmap.build_spec(step, num_classes=10, roadmap="repvit")
    assert count_params(model) == count_params(
        roadmap.build_model(step, num_classes=10, roadmap="repvit")
    )


@pytest.mark.parametrize("step", representative(roadmap.list_steps(roadmap="convnext")))
def test_other_roadmaps_register_under_their_name(step: str) -> None:
    model = timm.create_model(f"roadmap_convnext_{step}", num_classes=10)
    assert model.spec == roadmap.build_spec(step, num_classes=10, roadmap="convnext")
    cfg = model.pretrained_cfg
    assert isinstance(model.get_submodule(cfg["first_conv"]), nn.Conv2d)
    classifier = model.get_submodule(cfg["classifier"])
    assert isinstance(classifier, nn.Linear) and classifier.out_features == 10
    fused = roadmap.fuse(model)  # the classifier's BN folds away, the first conv stays
    assert isinstance(fused.get_submodule(cfg["first_conv"]), nn.Conv2d)
    assert isinstance(fused.get_classifier(), nn.Linear)


def test_data_config_resolves_from_the_model() -> None:
    model = timm.create_model("roadmap_gelu")
    config = resolve_data_config({}, model=model)
    assert config["input_size"] == (3, 224, 224)
    assert (config["crop_pct"], config["interpolation"]) == (0.875, "bicubic")
    assert config["mean"] == timm.data.IMAGENET_DEFAULT_MEAN
    assert model.default_cfg is model.pretrained_cfg


def test_head_api_used_by_timm() -> None:
    model = timm.create_model("roadmap_alternating_se", num_classes=10).eval()
    x = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape[:2] == (2, 384) and features.ndim == 4
        pre_logits = model.forward_head(features, pre_logits=True)
        assert pre_logits.shape == (2, model.num_features)
        assert torch.equal(model.forward_head(features), model(x))
    assert model.get_classifier() is model.head.classifier


def test_reset_classifier_changes_the_spec_too() -> None:
    model = timm.create_model("roadmap_simple_classifier", num_classes=10)
    model.reset_classifier(5)
    assert model.num_classes == model.spec.num_classes == 5
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, IMG, IMG)).shape == (1, 5)
    assert roadmap.fuse(model).get_classifier().out_features == 5


def test_timm_keyword_arguments() -> None:
    model = timm.create_model("roadmap_widen", in_chans=1, drop_rate=0.25, num_classes=3)
    assert model.spec.in_channels == 1 and model.spec.head.dropout == 0.25
    assert model.head.drop.p == 0.25
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 1, IMG, IMG)).shape == (1, 3)


@pytest.mark.slow  # a fresh interpreter, so that the registration on import is what is tested
def test_timm_run_runs_a_script_with_the_models_registered(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(
        "import sys, timm\n"
        "model = timm.create_model(sys.argv[1], num_classes=7)\n"
        "print(model.num_classes, model.pretrained_cfg['architecture'])\n"
    )
    command = [sys.executable, "-m", "roadmap.interop.timm_run", str(script), "roadmap_gelu"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["7", "roadmap_gelu"]


@pytest.mark.parametrize("argv", [[], ["not_a_script.txt"], ["missing.py"]], ids=str)
def test_timm_run_bad_arguments_exit_2(argv: list[str], capsys) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit) as exit_info:
        timm_run.main(argv)
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.splitlines()) == 1


@pytest.mark.filterwarnings("ignore:`torch.jit")  # deprecated, not gone; benchmark.py uses it
def test_scriptable_like_timm_benchmark_torchscript() -> None:
    model = timm.create_model("roadmap_alternating_se", num_classes=10).eval()
    fused = roadmap.fuse(model)
    scripted = torch.jit.script(fused)
    x = torch.randn(1, 3, IMG, IMG)
    with torch.no_grad():
        assert torch.allclose(scripted(x), fused(x), atol=1e-5)
