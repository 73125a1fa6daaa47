"""One network, one name: the naming grammar, its inverse, and the planned sets of networks."""

import pytest

import roadmap
from roadmap.arch import registry
from roadmap.arch.selection import Selection, name_for
from roadmap.errors import RoadmapError
from roadmap.study import plan
from roadmap.train.identity import legacy_names

PAPER = registry.paper_roadmap("repvit")
CONTROL = ("mobilenetv3_large", "gelu", "expansion_2", "widen")


@pytest.mark.parametrize(
    ("steps", "name"),
    [
        (PAPER[:1], "mobilenetv3_large"),
        (PAPER[:5], "widen"),
        (PAPER, "alternating_se"),
        (tuple(s for s in PAPER if s != "kernel_3x3"), "alternating_se-kernel_3x3"),
        (("mobilenetv3_large", "kernel_3x3"), "mobilenetv3_large+kernel_3x3"),
        (CONTROL, "widen-separate_mixers"),
        (("mobilenetv3_large", "widen", "gelu"), "mobilenetv3_large+widen+gelu"),  # reordered
    ],
)
def test_every_network_has_one_readable_name(steps: tuple[str, ...], name: str) -> None:
    assert Selection(steps, "repvit").name == name == name_for(steps, "repvit")
    assert Selection.from_name(name).steps == steps


def test_every_planned_name_reads_back_to_its_network() -> None:
    planned = plan.prefixes(Selection.of("repvit"))
    planned += plan.leave_one_out("repvit") + plan.only_one("repvit")
    for v in planned:
        assert Selection.from_name(v.name) == v.selection, v.name


def test_the_cli_options_and_the_name_agree() -> None:
    assert Selection.of("repvit", "widen", skip=["separate_mixers"]).name == "widen-separate_mixers"
    assert Selection.of("repvit", steps=list(CONTROL)).cli_args() == f"--steps {','.join(CONTROL)}"
    assert Selection.of("repvit", "widen").cli_args() == "--upto widen"


def test_names_that_are_not_networks_are_refused() -> None:
    for bad in ("nonsense", "widen-kernel_3x3", "gelu+nonsense"):
        with pytest.raises(RoadmapError):
            Selection.from_name(bad)


def test_a_spec_file_start_is_named_by_file_and_content(tmp_path) -> None:
    path = tmp_path / "my net.yaml"
    roadmap.build_spec("stage_ratio", roadmap="repvit").save(path)
    chosen = Selection.of("repvit", steps=["kernel_3x3"], spec_file=path)
    digest = roadmap.spec_hash(roadmap.build_spec("stage_ratio", roadmap="repvit"))[:8]
    assert chosen.name == f"spec-my_net-{digest}+kernel_3x3"
    assert chosen.spec() == roadmap.build_spec("kernel_3x3", roadmap="repvit")
    assert chosen.cli_args() == f"--spec {path} --steps kernel_3x3"
    assert [v.name for v in plan.prefixes(chosen)] == [chosen.name.split("+")[0], chosen.name]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"upto": "widen"}, "add steps on top with --steps"),
        ({"skip": ["gelu"]}, "add steps on top with --steps"),
        ({"steps": ["mobilenetv3_large"]}, "drop mobilenetv3_large from --steps"),
        ({"steps": ["gelu", "gelu"]}, "listed twice"),
    ],
)
def test_spec_file_with_options_that_do_not_apply(tmp_path, kwargs: dict, message: str) -> None:
    path = tmp_path / "net.json"
    roadmap.build_spec("gelu", roadmap="repvit").save(path)
    with pytest.raises(RoadmapError, match=message):
        Selection.of("repvit", spec_file=path, **kwargs)


def test_legacy_names_are_the_0_1_ones() -> None:
    assert legacy_names(Selection(PAPER[:3], "repvit")) == []  # prefixes kept their name
    assert legacy_names(Selection(CONTROL, "repvit")) == ["widen-without-separate_mixers"]
    assert legacy_names(Selection(("mobilenetv3_large", "widen", "gelu"), "repvit"))[0].startswith(
        "custom-"
    )


def test_ablation_sets_name_what_cannot_be_built() -> None:
    variants = {v.name: v for v in plan.leave_one_out("repvit", "deeper_downsampling")}
    missing = variants["deeper_downsampling-separate_mixers"]
    assert not missing.buildable and "apply separate_mixers before it" in missing.reason
    assert variants["deeper_downsampling-widen"].buildable
