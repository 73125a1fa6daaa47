"""Every step, every prefix, and the ablations: they build, run, and fail only for clear reasons.

Parametrized over the registry, so a newly registered step is covered the day it is added.
"""

import dataclasses
import re

import pytest
import torch

import roadmap
from roadmap.arch.registry import get_step
from roadmap.errors import PreconditionError
from roadmap_steps.repvit import CONTROL, ROADMAP
from tests.helpers import representative

STEPS = roadmap.list_steps("repvit")


def test_registry_holds_the_papers_eleven_steps_in_order():
    assert STEPS[: len(ROADMAP)] == list(ROADMAP)
    assert len(ROADMAP) == 11


@pytest.mark.parametrize("name", STEPS)
def test_step_has_metadata_and_a_lesson(name):
    step = get_step(name, "repvit")
    assert step.title and step.section.startswith("§")
    assert len(step.lesson) > 200, "the module docstring is the step's lesson"
    assert "paper" in step.lesson.lower()
    if not step.base:
        assert step.paper.speed is not None


@pytest.mark.parametrize("name", representative(STEPS))
def test_prefix_trains_at_224(name):
    model = roadmap.build_model(name, num_classes=5, roadmap="repvit").train()
    x = torch.randn(2, 3, 224, 224)
    out = model(x)
    assert out.shape == (2, 5)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("img_size", [32, 64])
@pytest.mark.parametrize("name", representative(STEPS))
def test_prefix_runs_at_small_resolution(name, img_size):
    model = roadmap.build_model(name, num_classes=3, roadmap="repvit")
    out = model(torch.randn(2, 3, img_size, img_size))
    out.mean().backward()
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, img_size, img_size)).shape == (1, 3)


@pytest.mark.parametrize("name", STEPS)
def test_each_step_changes_the_spec(name):
    """No step is a no-op on the prefix before it."""
    names = roadmap.resolve_steps(name, roadmap="repvit")
    before = roadmap.build_spec(steps=names[:-1], roadmap="repvit") if len(names) > 1 else None
    after = roadmap.build_spec(steps=names, roadmap="repvit")
    assert before is None or roadmap.diff(before, after)


def test_papers_control_experiment_builds_on_mobilenetv3_blocks():
    spec = roadmap.build_spec(steps=CONTROL, roadmap="repvit")
    kinds = {b.kind for _, b in spec.iter_blocks()}
    assert "repvit" not in kinds and "inverted_residual" in kinds
    assert spec.widths == (48, 96, 192, 384)
    assert all(b.expand_ratio in (1.0, 2.0) for _, b in spec.iter_blocks())
    roadmap.build(spec)(torch.randn(2, 3, 64, 64)).sum().backward()


@pytest.mark.parametrize("left_out", [s for s in ROADMAP if not get_step(s, "repvit").base])
def test_leave_one_out_builds_or_names_what_is_missing(left_out):
    try:
        spec = roadmap.build_spec(skip=[left_out], roadmap="repvit")
    except PreconditionError as e:
        assert any(s in str(e) for s in ROADMAP), f"error names no step: {e}"
        return
    roadmap.build(spec)(torch.randn(2, 3, 32, 32))


def test_deeper_downsampling_needs_separate_mixers():
    with pytest.raises(PreconditionError, match="apply separate_mixers before it"):
        roadmap.build_spec(skip=["separate_mixers"], roadmap="repvit")


def test_separate_mixers_needs_mobilenetv3_blocks():
    with pytest.raises(PreconditionError, match="needs mobilenetv3_large"):
        get_step("separate_mixers", "repvit").apply(roadmap.build_spec(roadmap="repvit"))


def test_final_spec_is_repvit_m0_9():
    spec = roadmap.build_spec(roadmap="repvit")
    assert spec.widths == (48, 96, 192, 384)
    assert spec.depths == (2, 2, 14, 2)
    assert [b.out_channels for b in spec.stem] == [24, 48]
    se = [[b.use_se for b in stage.blocks] for stage in spec.stages]
    assert se[2] == [True, False] * 7
    assert not any(b.use_se for stage in spec.stages for b in stage.downsample)
    assert {b.kernel_size for _, b in spec.iter_blocks()} == {3}
    assert {b.activation for _, b in spec.iter_blocks()} <= {"gelu", "none"}


def test_choices_documented_in_lessons_hold():
    """The lessons describe choices; check the spec does what they say."""
    ratio = roadmap.build_spec("stage_ratio", roadmap="repvit")
    assert all(b.use_se for b in ratio.stages[2].blocks[4:])  # copies of the last (SE) block
    deeper = roadmap.build_spec("deeper_downsampling", roadmap="repvit")
    pre, unit = deeper.stages[1].downsample
    assert (pre.kind, pre.out_channels, pre.use_se) == ("repvit", 48, False)
    assert (unit.kind, unit.out_channels, unit.kernel_size) == ("downsample", 96, 5)
    assert roadmap.build_spec("early_conv_stem", roadmap="repvit").stem[0].activation == "gelu"


@pytest.mark.parametrize(("name", "what"), [("widen", "widths"), ("stage_ratio", "depths")])
def test_four_stage_steps_refuse_other_networks(name, what):
    spec = roadmap.build_spec("gelu", roadmap="repvit")
    three = dataclasses.replace(spec, stages=spec.stages[:3])
    with pytest.raises(PreconditionError, match=f"{name} sets 4 stage {what}; .* 3 stages"):
        get_step(name, "repvit").apply(three)


@pytest.mark.parametrize("name", roadmap.list_steps("repvit"))
def test_lessons_leave_numbers_and_sections_to_the_registry(name: str) -> None:
    """The lesson's heading comes from the registry (its position and paper section), so a
    reordering cannot leave a docstring saying "Step 5 (§3.3)" about the wrong step."""
    lesson = get_step(name, "repvit").lesson
    assert not re.match(r"Step \d", lesson) and not re.search(r"\(§\d", lesson.splitlines()[0])
