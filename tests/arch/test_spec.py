"""The spec: immutable, JSON/YAML round trip, validation that names the path, diff, hash."""

import dataclasses

import pytest

import roadmap
from roadmap.arch.spec import NetSpec, replace, spec_hash, validate
from roadmap.arch.spec_diff import diff
from roadmap.errors import RoadmapError


@pytest.mark.parametrize("name", roadmap.list_steps("repvit"))
def test_json_and_yaml_round_trip(name, tmp_path):
    spec = roadmap.build_spec(name, roadmap="repvit")
    assert NetSpec.from_dict(spec.to_dict()) == spec
    for suffix, text in ((".json", spec.to_json()), (".yaml", spec.to_yaml())):
        path = tmp_path / f"spec{suffix}"
        path.write_text(text)
        assert NetSpec.load(path) == spec


def test_spec_is_frozen():
    spec = roadmap.build_spec("gelu", roadmap="repvit")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.num_classes = 3


def test_unknown_key_names_its_path():
    data = roadmap.build_spec("gelu", roadmap="repvit").to_dict()
    data["stages"][2]["blocks"][1]["kernal_size"] = 3
    with pytest.raises(RoadmapError, match=r"spec\.stages\.2\.blocks\.1: unknown key.*kernal_size"):
        NetSpec.from_dict(data)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("kernel_size", 4, "kernel_size must be odd"),
        ("stride", 3, "stride must be 1 or 2"),
        ("activation", "swish", "activation 'swish'"),
        ("kind", "mamba", "unknown block kind 'mamba'; known: conv"),
        ("out_channels", 0, "out_channels must be between 1 and"),
    ],
)
def test_validate_names_the_block_path(field, value, message):
    spec = roadmap.build_spec("gelu", roadmap="repvit")
    stage = spec.stages[1]
    bad = replace(stage, blocks=(replace(stage.blocks[0], **{field: value}),) + stage.blocks[1:])
    spec = replace(spec, stages=(spec.stages[0], bad) + spec.stages[2:])
    with pytest.raises(RoadmapError, match=rf"stages\.1\.blocks\.0: {message}"):
        validate(spec)


def test_load_reports_unreadable_files(tmp_path):
    with pytest.raises(RoadmapError, match="cannot read spec file"):
        NetSpec.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("stem: [unclosed")
    with pytest.raises(RoadmapError, match="not valid YAML"):
        NetSpec.load(bad)


def test_diff_reports_changed_added_and_removed():
    before = roadmap.build_spec("simple_classifier", roadmap="repvit")
    after = roadmap.build_spec("stage_ratio", roadmap="repvit")
    changes = diff(before, after)
    kinds = {c.kind for c in changes}
    assert kinds == {"added"}  # 1:1:7:1 only adds blocks (1->2 and 5->14 in stages 1 and 3)
    assert sum(c.path.startswith("stages.2.blocks.") for c in changes) == 9
    back = diff(after, before)
    assert {c.kind for c in back} == {"removed"}
    field_changes = diff(
        roadmap.build_spec("stage_ratio", roadmap="repvit"),
        roadmap.build_spec("kernel_3x3", roadmap="repvit"),
    )
    assert all(c.kind == "changed" and c.path.endswith("kernel_size") for c in field_changes)
    assert str(field_changes[0]).endswith(": 5 -> 3")


def test_hash_is_stable_and_sensitive():
    a, b = (
        roadmap.build_spec("gelu", roadmap="repvit"),
        roadmap.build_spec("gelu", roadmap="repvit"),
    )
    assert spec_hash(a) == spec_hash(b) and len(spec_hash(a)) == 12
    assert spec_hash(a) != spec_hash(replace(a, num_classes=10))


def test_set_fields_edits_only_the_named_kinds():
    spec = roadmap.build_spec("kernel_7x7", roadmap="convnext")
    edited = roadmap.set_fields(spec, "convnext", kernel_size=5, norm="layer")
    for (_, b), (_, a) in zip(spec.iter_blocks(), edited.iter_blocks(), strict=True):
        if b.kind == "convnext":
            assert (a.kernel_size, a.extra["norm"]) == (5, "layer")
            assert replace(a, kernel_size=b.kernel_size, extra=b.extra) == b
        else:
            assert a == b
    assert roadmap.set_fields(spec, ("bottleneck",), kernel_size=3) == spec  # none left
