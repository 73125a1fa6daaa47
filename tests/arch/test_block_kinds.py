"""Block kinds are open: one registered from outside the package builds, checks, fuses, draws,
profiles and counts like the built-in ones; and every kind's drawing has its module's widths."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import roadmap
from roadmap.arch import anatomy
from roadmap.arch.anatomy import Box, Node, Par, Seq
from roadmap.arch.blocks import BlockKind, block_kinds, get_block_kind, register_block_kind
from roadmap.arch.builder import build
from roadmap.arch.layers import ConvNorm, RepDepthwise
from roadmap.arch.reparam import fuse, unfused_norms
from roadmap.arch.spec import BlockSpec, NetSpec, replace
from roadmap.errors import RoadmapError
from roadmap.measure import profile
from roadmap.measure.counts import count_macs
from roadmap.teach import diagram
from tests.helpers import SLOW, calibrate_bn

# --- a block kind of a plugin's own ------------------------------------------------------------


class GroupedMix(nn.Module):
    """A re-parameterizable depthwise token mixer, then a grouped 1x1 conv (+ activation)."""

    def __init__(self, in_ch: int, spec: BlockSpec):
        super().__init__()
        groups = get_block_kind("grouped_mix").value(spec, "groups")
        self.token_mixer = RepDepthwise(in_ch, spec.kernel_size)
        self.mix = ConvNorm(in_ch, spec.out_channels, 1, groups=groups, act=spec.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(self.token_mixer(x))


def draw_grouped_mix(b: BlockSpec, in_ch: int, fused: bool) -> Node:
    k, groups = b.kernel_size, get_block_kind("grouped_mix").value(b, "groups")
    if fused:
        mixer: Node = Box("dw", f"DW {k}x{k}", (in_ch, in_ch))
    else:
        dw = Seq(anatomy.depthwise(k, in_ch, fused))
        one = Box("dw", "DW 1x1", (in_ch, in_ch))
        mixer = Seq((Par((dw, one, Box("identity", "identity"))), Box("bn", "BN")))
    label = f"grouped 1x1 conv {in_ch}->{b.out_channels}, {groups} groups"
    mix = (Box("conv", label, (in_ch, b.out_channels)),) + (() if fused else (Box("bn", "BN"),))
    return Seq((mixer, *mix, *anatomy.activation(b.activation)))


def check_grouped_mix(b: BlockSpec) -> list[str]:
    groups = b.extra.get("groups", 1)
    problems = [] if b.stride == 1 else ["a grouped_mix block has stride 1"]
    if b.out_channels % groups:
        problems.append(f"out_channels {b.out_channels} is not a multiple of {groups} groups")
    return problems


@pytest.fixture(scope="module")
def grouped_mix() -> BlockKind:
    if "grouped_mix" in block_kinds():  # the registry is process-wide and strict
        return get_block_kind("grouped_mix")
    return register_block_kind(
        BlockKind(
            "grouped_mix",
            build=GroupedMix,
            draw=draw_grouped_mix,
            title="RepVGG-style DW token mixer -> grouped 1x1",
            reads=("out_channels", "kernel_size", "stride", "activation"),
            extra={"groups": ("int", 1)},
            check=check_grouped_mix,
            parts={"token_mixer": "token mixer", "mix": "channel mixer"},
        )
    )


def with_grouped_stage(groups: int | None) -> NetSpec:
    """RepViT-M0.9 at 10 classes with stages.2 made grouped_mix blocks."""
    spec = roadmap.build_spec("alternating_se", num_classes=10, roadmap="repvit")
    extra = {} if groups is None else {"groups": groups}
    stage = spec.stages[2]
    blocks = tuple(
        BlockSpec("grouped_mix", b.out_channels, 3, 1, activation="gelu", extra=extra)
        for b in stage.blocks
    )
    stages = list(spec.stages)
    stages[2] = replace(stage, blocks=blocks)
    return replace(spec, stages=tuple(stages))


def test_a_registered_kind_builds_and_runs(grouped_mix: BlockKind) -> None:
    model = build(with_grouped_stage(4))
    block = model.stages[2].blocks[0]
    assert isinstance(block, GroupedMix) and block.mix.conv.groups == 4
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    assert isinstance(build(with_grouped_stage(None)).stages[2].blocks[0].mix.conv, nn.Conv2d)
    assert build(with_grouped_stage(None)).stages[2].blocks[0].mix.conv.groups == 1  # default


def test_its_fields_are_checked_in_specs_and_files(grouped_mix: BlockKind, tmp_path) -> None:
    spec = with_grouped_stage(4)
    path = tmp_path / "grouped.yaml"
    spec.save(path)
    assert NetSpec.load(path) == spec and "groups: 4" in path.read_text()
    assert roadmap.spec_hash(NetSpec.load(path)) == roadmap.spec_hash(spec)
    with pytest.raises(RoadmapError, match="not a multiple of 5 groups"):
        roadmap.validate(with_grouped_stage(5))
    path.write_text(path.read_text().replace("groups: 4", "groups: four"))
    with pytest.raises(RoadmapError, match=r"blocks\.0\.extra\.groups: must be a whole number"):
        NetSpec.load(path)
    path.write_text(path.read_text().replace("groups: four", "width_per_group: 4"))
    with pytest.raises(RoadmapError, match=r"grouped_mix blocks have no field\(s\)"):
        NetSpec.load(path)


def test_the_built_in_kinds_keep_their_json_and_hash() -> None:
    """``extra`` stays out of a spec that does not use it: stored results still match."""
    spec = roadmap.build_spec("alternating_se", roadmap="repvit")
    assert "extra" not in spec.to_json()
    assert roadmap.spec_hash(spec) == roadmap.spec_hash(NetSpec.from_dict(spec.to_dict()))


def test_a_registered_kind_fuses_to_the_same_function(grouped_mix: BlockKind) -> None:
    model = calibrate_bn(build(with_grouped_stage(4)))
    fused = fuse(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), fused(x), atol=1e-4, rtol=1e-4)
    assert unfused_norms(fused) == []
    assert isinstance(fused.stages[2].blocks[0].token_mixer, nn.Conv2d)  # three branches, one conv


def test_a_registered_kind_draws(grouped_mix: BlockKind) -> None:
    spec = with_grouped_stage(4)
    train = diagram.part(spec, "stages.2.blocks.0")
    assert "grouped_mix" in train.title and diagram.find(train.root, Par)
    assert "4 groups" in diagram.svg(train)
    assert not diagram.find(diagram.part(spec, "stages.2.blocks.0", fused=True).root, Par)


def test_a_registered_kind_is_profiled_by_its_parts(grouped_mix: BlockKind) -> None:
    model = fuse(build(with_grouped_stage(4)))
    kinds = {u.path: u.kind for u, _ in profile.units(model)}
    assert kinds["stages.2.blocks.0.token_mixer"] == "token mixer"
    assert kinds["stages.2.blocks.0.mix.conv"] == "channel mixer"


def test_a_registered_kind_is_counted(grouped_mix: BlockKind) -> None:
    """Grouping the 1x1 conv by 4 saves 3/4 of its MACs, in every block of the stage."""
    spec1, spec4 = with_grouped_stage(1), with_grouped_stage(4)
    blocks, width = len(spec1.stages[2].blocks), spec1.widths[2]
    pixels = (224 // 16) ** 2  # stages.2 works at 1/16 of the resolution
    saved = count_macs(fuse(build(spec1)), 224) - count_macs(fuse(build(spec4)), 224)
    assert saved == blocks * width * width * 3 // 4 * pixels


def test_kind_registry_is_strict(grouped_mix: BlockKind) -> None:
    with pytest.raises(RoadmapError, match="already registered"):
        register_block_kind(grouped_mix)
    with pytest.raises(RoadmapError, match="parts may be"):
        register_block_kind(BlockKind("odd", build=GroupedMix, draw=draw_grouped_mix,
                                      parts={"x": "recurrence"}))  # fmt: skip
    with pytest.raises(RoadmapError, match="unknown block kind 'nope'; known: conv, .*grouped_mix"):
        get_block_kind("nope")


# --- every kind's drawing has its module's widths ----------------------------------------------


def conv_widths(module: nn.Module, x: torch.Tensor, network: nn.Module) -> list[tuple[int, int]]:
    """(in, out) of every conv/linear layer inside ``module``, in the order a forward runs them."""
    return convs_by_part(network, x, {"": module})[""]


def convs_by_part(
    network: nn.Module, x: torch.Tensor, parts: dict[str, nn.Module]
) -> dict[str, list[tuple[int, int]]]:
    """:func:`conv_widths` of several parts of one network, from a single forward pass."""
    order: dict[str, list[tuple[int, int]]] = {key: [] for key in parts}

    def recorder(key: str):  # noqa: ANN202
        def record(layer: nn.Module, _inputs: object, _output: object) -> None:
            if isinstance(layer, nn.Conv2d):
                order[key].append((layer.in_channels, layer.out_channels))
            else:
                order[key].append((layer.in_features, layer.out_features))

        return record

    hooks = [
        m.register_forward_hook(recorder(key))
        for key, part in parts.items()
        for m in part.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    with torch.no_grad():
        network.eval()(x)
    for h in hooks:
        h.remove()
    return order


def drawn_widths(node: Node) -> list[tuple[int, int]]:
    """(in, out) of every convolution the drawing shows, in drawing order."""
    pairs = []
    for box in anatomy.boxes(node):
        pairs += list(zip(box.channels, box.channels[1:], strict=False))
    return pairs


# ConvNeXt's roadmap: the fast tier draws its first ConvNeXt block (BatchNorm, every norm and
# activation, a projection shortcut) and its end; the full suite every step.
CONVNEXT = [f"convnext.{s}" for s in roadmap.list_steps(roadmap="convnext")]
CONVNEXT_FAST = ("convnext.move_up_dw", "convnext.separate_downsampling")
# Once LayerNorm is in, nothing folds: the deploy form of those steps is their training form.
CONVNEXT_FOLDS = CONVNEXT[: CONVNEXT.index("convnext.layer_norm")]
DRAWINGS = [
    *((n, False) for n in [*roadmap.list_steps("repvit"), "widen-separate_mixers"]),
    *(
        pytest.param(n, True, marks=SLOW)
        for n in [*roadmap.list_steps("repvit"), "widen-separate_mixers"]
    ),
    *((n, False) if n in CONVNEXT_FAST else pytest.param(n, False, marks=SLOW) for n in CONVNEXT),
    *(pytest.param(n, True, marks=SLOW) for n in CONVNEXT_FOLDS),
    # Visformer's: every step in the full suite (tokens, maps, attention), and the deploy form
    # of its end, where every kind of fold happens (BatchNorm into a patch conv, a qkv or MLP
    # conv, and the classifier)
    *(pytest.param(f"visformer.{n}", False, marks=SLOW) for n in roadmap.list_steps("visformer")),
    pytest.param("visformer.visformer_s", True, marks=SLOW),
]


@pytest.mark.parametrize(("name", "fused"), DRAWINGS)
def test_every_drawing_has_its_modules_widths(name: str, fused: bool) -> None:
    spec = roadmap.Selection.from_name(name).spec(10)
    model = build(spec)
    model = fuse(model) if fused else model
    x = torch.randn(1, 3, 64, 64)
    paths = [path for path, _block in spec.iter_blocks()]
    built = convs_by_part(model, x, {p: model.get_submodule(p) for p in [*paths, "head"]})
    for path in paths:
        assert drawn_widths(diagram.block_at(spec, path, fused)) == built[path], path
    head = diagram.part(spec, "head", fused).root
    assert drawn_widths(head) == built["head"]


def test_the_width_check_sees_a_wrong_drawing() -> None:
    spec = roadmap.build_spec("alternating_se", num_classes=10, roadmap="repvit")
    model = build(spec)
    path = "stages.2.blocks.0"
    right = drawn_widths(diagram.block_at(spec, path, False))
    wrong = replace(spec.stages[2].blocks[0], expand_ratio=3.0)  # drawn wider than it is built
    drawn = drawn_widths(diagram.block(wrong, diagram.block_inputs(spec)[path], False))
    built = conv_widths(model.get_submodule(path), torch.randn(1, 3, 64, 64), model)
    assert right == built and drawn != built


def test_lazy_imports_its_module_only_when_called() -> None:
    """A kind's build named with ``lazy`` leaves its module unimported until a block is
    built; the callable names that module (the kind's owner) and refuses a malformed name."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from roadmap.arch.blocks import lazy\n"
        "f = lazy('fractions:Fraction')\n"
        "print('fractions' in sys.modules, f.__module__, f(3, 6), 'fractions' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "fractions", "1/2", "True"]
    for bad in ("fractions", "fractions:", ":Fraction"):
        with pytest.raises(RoadmapError, match="expected 'module:name'"):
            roadmap.lazy(bad)


def test_every_built_in_kind_is_declared_apart_from_torch() -> None:
    """Each kind's build comes from a module other than its declaration's (the one that draws
    it), and no declaration imports torch at its top level (what lets a spec be checked
    before torch loads; the spec-mistake test in test_bad_day proves the whole path)."""
    import ast
    import inspect

    for name in block_kinds():
        kind = get_block_kind(name)
        declared = inspect.getmodule(kind.draw)
        assert declared is not None, name
        if not declared.__name__.startswith(("roadmap.", "roadmap_steps.")):
            continue  # a test's or a plugin's kind
        assert kind.build.__module__ != declared.__name__, name
        imported = set()
        for node in ast.parse(inspect.getsource(declared)).body:
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
        assert not imported & {"torch", "timm", "fvcore"}, (name, declared.__name__)


def test_make_divisible_is_timms() -> None:
    """anatomy's copy of the MobileNets' rounding (kept torch-free) against timm's own."""
    from timm.layers import make_divisible as timms

    for v in [x / 4 for x in range(1, 4000)]:
        for divisor in (4, 8, 16):
            for limit in (0.0, 0.9):
                assert anatomy.make_divisible(v, divisor, limit) == timms(v, divisor, None, limit)
