"""Resolution of --upto / --steps / --skip, and the registry's strictness."""

import pytest

import roadmap
from roadmap.arch.registry import register_step, resolve_steps
from roadmap.errors import RoadmapError


def test_upto_is_an_inclusive_prefix():
    assert resolve_steps("widen", roadmap="repvit") == [
        "mobilenetv3_large",
        "gelu",
        "separate_mixers",
        "expansion_2",
        "widen",
    ]


def test_default_is_the_whole_roadmap():
    assert resolve_steps(roadmap="repvit")[-1] == "alternating_se"
    assert len(resolve_steps(roadmap="repvit")) == 11


def test_explicit_steps_get_the_base_in_front():
    assert resolve_steps(steps=["gelu", "widen"], roadmap="repvit") == [
        "mobilenetv3_large",
        "gelu",
        "widen",
    ]


def test_skip_leaves_steps_out():
    assert "kernel_3x3" not in resolve_steps(skip=["kernel_3x3"], roadmap="repvit")


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(RoadmapError, match="unknown step 'nonsense'.*alternating_se"):
        resolve_steps("nonsense", roadmap="repvit")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"upto": "gelu", "steps": ["gelu"]}, "either --upto or --steps"),
        ({"steps": ["gelu", "gelu"]}, "listed twice: gelu"),
        ({"skip": ["mobilenetv3_large"]}, "every network starts from it"),
        ({"upto": "gelu", "skip": ["widen"]}, "not among the steps"),
        ({"steps": ["gelu", "mobilenetv3_large"]}, "list it first, or leave it out"),
    ],
)
def test_bad_combinations_are_explained(kwargs, message):
    with pytest.raises(RoadmapError, match=message):
        roadmap.build_spec(**kwargs, roadmap="repvit")


def test_duplicate_registration_raises():
    with pytest.raises(RoadmapError, match="already registered"):
        register_step("gelu", title="again", section="§0", roadmap="repvit")(lambda spec: spec)


def test_num_classes_is_applied_and_validated():
    assert roadmap.build_spec("gelu", num_classes=7, roadmap="repvit").num_classes == 7
    assert (
        roadmap.build_spec("gelu", num_classes=0, roadmap="repvit").num_classes == 0
    )  # a backbone: no classifier
    with pytest.raises(RoadmapError, match="num_classes"):
        roadmap.build_spec("gelu", num_classes=-1, roadmap="repvit")
