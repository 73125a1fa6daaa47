"""Visformer's roadmap (DeiT-S -> Visformer-S) as a user drives it: its steps in the paper's
order, each step's change, the transformer block kinds, the attention MACs, the commands.

The ends' exactness against timm (parameters, layers, outputs, initialization) is proved with
the other roadmaps' in ``test_endpoints.py`` and, through ``roadmap verify``, here; folding in
``test_reparam.py``; the timm contract in ``tests/interop/test_timm_contract.py``.
"""

import json

import pytest
import torch
from typer.testing import CliRunner

import roadmap
from roadmap.arch.anatomy import hidden_width
from roadmap.arch.spec import BlockSpec, ends_in_tokens, replace
from roadmap.cli import app
from roadmap.measure.counts import count_macs
from roadmap_steps.visformer import ROADMAP
from roadmap_steps.visformer.blocks.layers import Attention

runner = CliRunner()


def cli(*args: object) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def spec(step: str) -> roadmap.NetSpec:
    return roadmap.build_spec(step, roadmap="visformer")


def blocks_of(net: roadmap.NetSpec, kind: str) -> list[BlockSpec]:
    return [b for _, b in net.iter_blocks() if b.kind == kind]


def test_the_roadmap_is_the_transition_then_visformer() -> None:
    assert roadmap.list_steps(roadmap="visformer") == list(ROADMAP)
    listed = json.loads(cli("steps", "--roadmap", "visformer", "--format", "json"))
    assert [s["name"] for s in listed] == list(ROADMAP)
    # The paper's table could not be read here: every number of the paper's stays empty.
    assert all(s["paper_top1"] is None and s["paper_cost"] is None for s in listed)


def test_each_step_makes_its_change() -> None:
    deit, pooled = spec("deit_s"), spec("global_pool")
    assert [b.kind for b in deit.stem] == ["patch_embed", "class_token", "position_embedding"]
    assert deit.head.pool == "token" and ends_in_tokens(deit)
    assert "class_token" not in [b.kind for b in pooled.stem] and pooled.head.pool == "avg"
    assert not ends_in_tokens(pooled)
    stepwise = spec("stepwise_embedding")
    assert stepwise.depths == (0, 12, 0) and stepwise.widths == (192, 384, 768)
    assert [b.kernel_size for b in blocks_of(stepwise, "patch_embed")] == [4, 2, 2]
    staged = spec("stage_wise")
    assert staged.depths == (4, 4, 4)
    assert staged.stages[0].blocks[0].extra["head_dim_ratio"] == 0.5
    assert {b.extra["norm"] for b in blocks_of(spec("batch_norm"), "transformer")} == {"batch"}
    assert spec("batch_norm").head.pre_pool_norm == "batch"
    ffn = spec("conv_ffn").stages[1].blocks[0]
    assert ffn.extra["spatial"] and hidden_width(384, ffn.expand_ratio) == 320
    assert not list(blocks_of(spec("no_position_embedding"), "position_embedding"))
    no_attention = spec("no_attention")
    assert no_attention.depths == (6, 7, 7)
    assert not any(b.extra["attention"] for b in blocks_of(no_attention, "transformer"))
    final = spec("visformer_s")
    assert final.depths == (7, 4, 4)
    first, later = final.stages[0].blocks[0], final.stages[2].blocks[0]
    assert not first.extra["attention"] and first.extra["groups"] == 8
    assert later.extra["attention"] and not later.extra["spatial"] and not later.extra["bias"]


def test_a_step_needs_the_form_it_changes() -> None:
    """Without global_pool the class token is still there: stepwise_embedding says so."""
    with pytest.raises(roadmap.RoadmapError, match="after global_pool"):
        roadmap.build_spec(steps=["deit_s", "stepwise_embedding"], roadmap="visformer")


def test_attention_macs_are_counted() -> None:
    """fvcore does not count inside scaled_dot_product_attention: ours counts q k^T and the
    weighted sum, so an attention layer costs its projections plus 2 x heads x N^2 x d."""
    width, heads, n = 64, 4, 49
    module = torch.nn.Sequential(Attention(width, heads, width // heads, bias=True, tokens=False))
    macs = count_macs(module, img_size=7, in_channels=width)
    projections = n * width * 3 * width + n * width * width
    assert macs == projections + 2 * n * n * width


def test_deit_s_macs_are_its_usual_count() -> None:
    """DeiT-S is counted at 4.6 GMACs (its paper and timm's tables); ours: conv, linear,
    attention products, and fvcore's count of the LayerNorms."""
    macs = count_macs(roadmap.build_model("deit_s", roadmap="visformer"), 224)
    assert round(macs / 1e9, 1) == 4.6


def test_bad_transformer_fields_are_named() -> None:
    block = replace(spec("global_pool").stages[0].blocks[0], extra={"heads": 5})
    bad = replace(
        spec("global_pool"), stages=(replace(spec("global_pool").stages[0], blocks=(block,)),)
    )
    with pytest.raises(roadmap.RoadmapError, match=r"stages.0.blocks.0: 5 heads do not divide"):
        roadmap.validate(bad)
    token_bn = BlockSpec(
        kind="transformer", out_channels=8, extra={"tokens": True, "norm": "batch"}
    )
    assert "map form" in roadmap.get_block_kind("transformer").problems(token_bn)[0]


def test_a_token_head_needs_a_class_token() -> None:
    pooled = spec("global_pool")
    with pytest.raises(roadmap.RoadmapError, match="no block of this network adds one"):
        roadmap.validate(replace(pooled, head=replace(pooled.head, pool="token")))


def test_a_transformer_trains_at_another_resolution() -> None:
    """The position embedding belongs to 224 px (14 x 14); at 64 px it is resampled to 4 x 4,
    and gradients reach it."""
    model = roadmap.build_model("deit_s", roadmap="visformer", num_classes=3)
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    assert model.stem[2].pos_embed.shape == (1, 197, 384)
    assert model.stem[2].pos_embed.grad.abs().sum() > 0


@pytest.mark.slow  # two ViTs at 224 px: about 9 s
def test_verify_says_both_ends_equal_timm() -> None:
    text = cli("verify", "--roadmap", "visformer")
    assert "deit_small_patch16_224" in text and "visformer_small" in text
    assert text.count("equal") >= 2 and "differ" not in text


@pytest.mark.slow  # a few commands on a 40 M-parameter network
def test_the_commands_take_the_transformer_roadmap(tmp_path) -> None:  # noqa: ANN001
    built = json.loads(
        cli("build", "--roadmap", "visformer", "--upto", "visformer_s", "--format", "json")
    )
    assert built["params"] == 40_219_592 and built["name"] == "visformer.visformer_s"
    lesson = cli("explain", "deit_s", "--roadmap", "visformer", "--no-latency")
    assert "self-attention" in lesson and "could not be read" in lesson
    svg = tmp_path / "block.svg"
    cli(
        "draw",
        "--roadmap",
        "visformer",
        "--upto",
        "deit_s",
        "--part",
        "stages.0.blocks.0",
        "--out",
        svg,
    )
    assert "self-attention, 6 heads x 64" in svg.read_text()
    profile = cli(
        "profile", "--roadmap", "visformer", "--upto", "visformer_s", "--img-size", "64",
        "--iters", "2", "--warmup", "1", "--alone",
    )  # fmt: skip
    assert "attention" in profile and "MLP" in profile
