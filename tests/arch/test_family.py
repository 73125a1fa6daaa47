"""The RepViT family from the roadmap's spec: equal to timm's models, and any size between."""

import json

import pytest
import timm
import torch
from typer.testing import CliRunner

import roadmap
from roadmap.arch.builder import build
from roadmap.arch.family import parse_size
from roadmap.arch.selection import Selection
from roadmap.cli import app
from roadmap.errors import RoadmapError
from roadmap.measure.counts import count_params
from roadmap_steps.repvit import FAMILY as SIZES
from tests.helpers import executed_layers, representative, signature

FAMILY = {size.label: size for size in SIZES}

# Fused (deploy) parameters and MACs of each member at 1000 classes, as the reference notes
# computed them from the official configs (one head).
DEPLOY = {
    "m0_6": (2_468_072, 0.385),
    "m0_9": (5_067_056, 0.816),
    "m1_0": (6_810_312, 1.106),
    "m1_1": (8_244_312, 1.337),
    "m1_5": (14_049_992, 2.274),
    "m2_3": (22_926_792, 4.516),
}
WITH_TIMM = [label for label, size in FAMILY.items() if size.timm_name]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("label", representative(WITH_TIMM))
def test_each_member_is_timms_model_layer_for_layer(label: str) -> None:
    ours = build(Selection.of("repvit", size=label).spec())
    theirs = timm.create_model(FAMILY[label].timm_name, distillation=False)
    assert count_params(ours) == count_params(theirs)
    a, b = executed_layers(ours), executed_layers(theirs)
    assert [signature(m) for m in a] == [signature(m) for m in b]


@pytest.mark.parametrize("label", representative(list(FAMILY)))
def test_deploy_counts(label: str) -> None:
    from roadmap.measure.counts import count

    counts = count(build(Selection.of("repvit", size=label).spec()), train_macs=False)
    params, gmacs = DEPLOY[label]
    assert counts.deploy_params == params
    assert round(counts.deploy_macs / 1e9, 3) == gmacs


def test_multipliers_scale_widths_depths_and_keep_the_se_pattern() -> None:
    spec = Selection.of("repvit", size="w1.25d1.5").spec()
    assert spec.widths == (64, 120, 240, 480)  # 48 x 1.25 = 60 -> 64: multiples of 8
    assert spec.depths == (3, 3, 21, 3)
    assert spec.stem[0].out_channels == round(24 * 64 / 48)
    for stage in spec.stages:
        assert [b.use_se for b in stage.blocks] == [i % 2 == 0 for i in range(len(stage.blocks))]
    model = build(spec).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_a_prefix_scales_too_and_names_say_so() -> None:
    chosen = Selection.of("repvit", "widen", size="w0.5d1")
    assert chosen.name == "widen@w0.5d1" and Selection.from_name(chosen.name) == chosen
    assert chosen.spec().widths == (24, 48, 96, 192)
    assert chosen.cli_args() == "--upto widen --size w0.5d1"


@pytest.mark.parametrize("text", ["m3", "w0d1", "w1.5", "w9d1"])
def test_bad_sizes_are_named(text: str) -> None:
    with pytest.raises(RoadmapError, match="size"):
        parse_size(text, SIZES, "repvit")


@pytest.mark.slow
def test_the_family_in_build_table_and_timm() -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["build", "--size", "m1_5", "--format", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["deploy_params"] == DEPLOY["m1_5"][0]
    table = runner.invoke(app, ["table", "--family", "--no-latency", "--format", "json"])
    rows = json.loads(table.stdout)["rows"]
    assert [r["name"] for r in rows] == [f"alternating_se@{label}" for label in FAMILY]
    assert [r["paper_top1"] for r in rows] == [None, 77.4, 78.6, 79.4, 81.2, 82.5]
    roadmap.register_timm_models()
    model = timm.create_model("roadmap_repvit_m1_1", num_classes=7)
    reference = timm.create_model("repvit_m1_1", num_classes=7, distillation=False)
    assert count_params(model) == count_params(reference)


CONVNEXT_TIMM = {"t": "convnext_tiny", "s": "convnext_small", "b": "convnext_base"}


@pytest.mark.parametrize(
    "label",
    ["s", pytest.param("b", marks=pytest.mark.slow)],  # T is the roadmap's end
)
def test_convnext_family_members_are_timms_layer_for_layer(label: str) -> None:
    from roadmap.interop.reference import check_reference

    ours = build(Selection.of("convnext", size=label).spec(10))
    theirs = timm.create_model(CONVNEXT_TIMM[label], num_classes=10)
    assert count_params(ours) == count_params(theirs)
    check = check_reference(ours, theirs, img_size=32)
    assert check.equal, check.difference


@pytest.mark.slow  # over 1 s: the full suite runs it
def test_convnext_sizes_in_the_cli_and_a_roadmap_without_a_family() -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["build", "--roadmap", "convnext", "--size", "l", "--format", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["params"] == 197_767_336  # timm's convnext_large
    typo = runner.invoke(app, ["build", "--roadmap", "convnext", "--size", "m1_5"])
    assert typo.exit_code == 2 and "convnext's family is t, s, b, l" in typo.output
    with pytest.raises(RoadmapError, match="the tiny roadmap has no family"):
        parse_size("m1_5", (), "tiny")
