"""The deploy form: fused == unfused for every step and ablation, nothing dropped, deploy counts."""

import json
from collections.abc import Iterator

import pytest
import timm
import torch
from timm.utils import reparameterize_model
from torch import nn
from typer.testing import CliRunner

import roadmap
from roadmap.arch.layers import RepDepthwise
from roadmap.arch.reparam import fuse, unfused_norms
from roadmap.cli import app
from roadmap.measure.counts import count_macs, count_params
from roadmap_steps.repvit import CONTROL
from tests.helpers import SLOW, calibrate_bn

# fp32 re-association error is ~1e-6 of the logit scale; a wrong fold is orders larger.
RTOL = 1e-4
IMG = 64  # small inputs keep the suite fast; folding does not depend on resolution

ABLATIONS = {
    "control": list(CONTROL),  # expansion 2 + widths on MobileNetV3 blocks
    "without_kernel_3x3": roadmap.resolve_steps(
        skip=["kernel_3x3"], roadmap="repvit"
    ),  # 5x5 RepDepthwise
    "without_early_conv_stem": roadmap.resolve_steps(skip=["early_conv_stem"], roadmap="repvit"),
}
SELECTIONS = {
    **{
        step: roadmap.resolve_steps(upto=step, roadmap="repvit")
        for step in roadmap.list_steps("repvit")
    },
    **ABLATIONS,
}
# ConvNeXt's roadmap: every step (its networks are ResNet-50-sized, so the fast tier folds only
# its end; the full suite folds every step, the BatchNorm era's bottlenecks and patchify too).
CONVNEXT = {f"convnext.{s}": s for s in roadmap.list_steps(roadmap="convnext")}
CONVNEXT_FAST = {"separate_downsampling"}
SELECTIONS |= {
    name: roadmap.resolve_steps(upto=step, roadmap="convnext") for name, step in CONVNEXT.items()
}
# Visformer's: every step (at 64 px its networks are small); the fast tier folds Visformer-S
# (BatchNorm in the patch embeddings, the blocks and the final norm before the classifier).
VISFORMER = {f"visformer.{s}": s for s in roadmap.list_steps(roadmap="visformer")}
SELECTIONS |= {
    name: roadmap.resolve_steps(upto=step, roadmap="visformer") for name, step in VISFORMER.items()
}
FAST = (
    set(roadmap.list_steps("repvit"))
    | {f"convnext.{s}" for s in CONVNEXT_FAST}
    | {"visformer.visformer_s"}
)


def assert_same_function(a: nn.Module, b: nn.Module, img_size: int = IMG, chans: int = 3) -> None:
    x = torch.randn(4, chans, img_size, img_size)
    with torch.no_grad():
        ya, yb = a(x), b(x)
    scale = max(1.0, ya.abs().max().item())
    assert (ya - yb).abs().max().item() <= RTOL * scale


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """One intra-op thread: on a busy 2-core machine, two OpenMP threads contend and crawl."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(
    scope="module",
    params=[n if n in FAST else pytest.param(n, marks=SLOW) for n in SELECTIONS],
    ids=list(SELECTIONS),
)
def calibrated(request: pytest.FixtureRequest) -> nn.Module:
    """A network of the selection, with non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(0)
    name = request.param.split(".")[0] if "." in request.param else "repvit"
    steps = SELECTIONS[request.param]
    return calibrate_bn(roadmap.build_model(steps=steps, num_classes=10, roadmap=name))


@pytest.fixture(scope="module")
def fused(calibrated: nn.Module) -> nn.Module:
    return fuse(calibrated)


def test_fused_equals_unfused(calibrated: nn.Module, fused: nn.Module) -> None:
    assert_same_function(calibrated, fused)


def test_fuse_folds_every_norm_and_leaves_the_original(calibrated: nn.Module) -> None:
    before = {k: v.clone() for k, v in calibrated.state_dict().items()}
    fused = fuse(calibrated)
    assert unfused_norms(fused) == []
    # what is left to fuse has nothing to fold (a LayerNorm's layers return themselves)
    assert all(m.fuse() is m for m in fused.modules() if hasattr(m, "fuse"))
    norms = (nn.BatchNorm2d, nn.LayerNorm)
    assert any(
        isinstance(m, norms) for m in calibrated.modules()
    )  # the original keeps its norms...
    after = calibrated.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # ...and its values


# The two slow checks below take ConvNeXt's first step of each form (what folds is the same
# within a form): bottleneck, depthwise bottleneck, ConvNeXt block (all norms, then one).
FORMS = [
    n
    for n in SELECTIONS
    if n not in {**CONVNEXT, **VISFORMER}
    or n in {f"convnext.{s}" for s in ("resnet50", "depthwise_conv", "move_up_dw", "fewer_norms")}
    or n == "visformer.visformer_s"
]


@pytest.mark.slow  # every selection again; the fast tier folds and compares them
@pytest.mark.parametrize("calibrated", FORMS, indirect=True)
@pytest.mark.filterwarnings("ignore:`torch.jit.trace")  # deprecated in favour of torch.export
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # the position embedding's size test
def test_fused_model_traces(fused: nn.Module) -> None:
    x = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        traced = torch.jit.trace(fused, x, check_trace=False)  # checked on the next line
        assert torch.allclose(traced(x), fused(x), atol=1e-5)


@pytest.mark.slow  # every selection again; the fast tier folds and compares them
@pytest.mark.parametrize("calibrated", FORMS, indirect=True)
def test_timm_reparameterize_model_agrees_with_fuse(
    calibrated: nn.Module, fused: nn.Module
) -> None:
    theirs = reparameterize_model(calibrated)  # timm's walk over our fuse() methods
    assert unfused_norms(theirs) == []
    x = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        assert torch.equal(fused(x), theirs(x))


@pytest.mark.parametrize("kernel_size", [3, 5, 7])
def test_rep_depthwise_folds_any_odd_kernel(kernel_size: int) -> None:
    block = calibrate_rep_depthwise(RepDepthwise(16, kernel_size))
    fused = block.fuse()
    assert isinstance(fused, nn.Conv2d) and fused.kernel_size == (kernel_size, kernel_size)
    assert fused.padding == ((kernel_size - 1) // 2,) * 2
    assert_same_function(block, fused, img_size=16, chans=16)


def calibrate_rep_depthwise(block: RepDepthwise) -> RepDepthwise:
    """Random BN affine params and statistics taken from data, on a bare 16-channel block."""
    for bn in (block.conv.bn, block.bn):
        nn.init.uniform_(bn.weight, 0.5, 1.5)
        nn.init.uniform_(bn.bias, -0.3, 0.3)
        bn.momentum = None
    nn.init.normal_(block.conv1.bias, std=0.1)
    block.train()
    with torch.no_grad():
        for _ in range(3):
            block(torch.randn(8, 16, 16, 16))
    return block.eval()


def assert_same_on_channels(a: nn.Module, b: nn.Module) -> None:
    x = torch.randn(2, 8, 16, 16)
    with torch.no_grad():
        assert torch.allclose(a(x), b(x), atol=1e-5)


def test_a_norm_that_cannot_be_folded_is_kept() -> None:
    """No fuse() parent, no fold: the BN and whatever follows it stay (never Identity)."""
    model = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    calibrate_plain(model)
    fused = fuse(model)
    assert unfused_norms(fused) == ["1"]
    assert isinstance(fused[2], nn.ReLU)
    assert_same_on_channels(model, fused)


def calibrate_plain(model: nn.Module) -> None:
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 8, 16, 16) + 1.0)
    model.eval()


# --- deploy counts of the endpoints, against timm itself ---------------------------------


def timm_deploy(name: str, **kwargs: object) -> nn.Module:
    return reparameterize_model(timm.create_model(name, **kwargs).eval())


@pytest.mark.slow
def test_last_step_deploy_counts_equal_timm_fused_repvit() -> None:
    ours = fuse(roadmap.build_model("alternating_se", roadmap="repvit"))
    theirs = timm_deploy("repvit_m0_9", distillation=False)
    assert count_params(ours) == count_params(theirs) == 5_067_056
    macs = count_macs(ours)
    assert macs == count_macs(theirs)
    assert round(macs / 1e9, 3) == 0.816


@pytest.mark.slow
def test_first_step_deploy_counts_follow_from_timm_mobilenetv3() -> None:
    """timm keeps MobileNetV3's BNs; folding one trades its 2C affine params for a C-wide bias."""
    ours = fuse(roadmap.build_model("mobilenetv3_large", roadmap="repvit"))
    theirs = timm.create_model("mobilenetv3_large_100").eval()
    bn_channels = sum(m.num_features for m in theirs.modules() if isinstance(m, nn.BatchNorm2d))
    assert count_params(ours) == count_params(theirs) - bn_channels
    assert count_macs(ours) == count_macs(theirs)  # BN is not counted, so MACs are unchanged


@pytest.mark.slow
def test_build_json_shows_deploy_counts() -> None:
    result = CliRunner().invoke(app, ["build", "--upto", "alternating_se", "--format", "json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["deploy_params"] == 5_067_056
    assert round(record["deploy_macs"] / 1e9, 3) == 0.816
    assert record["params"] == 5_103_560  # the training form beside it


@pytest.mark.filterwarnings("ignore:`torch.jit.script")  # importing fvcore scripts a helper
def test_macs_are_counted_with_the_input_where_the_weights_are(monkeypatch) -> None:  # noqa: ANN001
    # A model trained on a GPU is still there when its MACs are counted; the traced input must
    # follow it. The meta device stands in for the GPU here (fvcore itself cannot trace on it).
    import fvcore.nn

    seen: list[torch.device] = []

    class Recorder:
        def __init__(self, model: nn.Module, x: torch.Tensor) -> None:
            seen.append(x.device)

        def __getattr__(self, name: str) -> object:
            return lambda *args, **kwargs: self

        def total(self) -> int:
            return 1

    monkeypatch.setattr(fvcore.nn, "FlopCountAnalysis", Recorder)
    assert count_macs(nn.Conv2d(3, 4, 3).to("meta"), 8) == 1
    assert seen == [torch.device("meta")]
