"""Every roadmap's endpoints equal timm's networks: same layers in the same order, same
function, same starting distributions (RepViT's: MobileNetV3-L and RepViT-M0.9; ConvNeXt's:
ResNet-50 and ConvNeXt-T; Visformer's: DeiT-S and Visformer-S, whose timm models take 224 px
only)."""

import pytest
import timm
import torch
from torch import nn

import roadmap
from tests.helpers import calibrate_bn, executed_layers, signature

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)

# (roadmap:step, timm model, its arguments, parameters at 1000 classes)
ENDPOINTS = [
    ("repvit:mobilenetv3_large", "mobilenetv3_large_100", {}, 5_483_032),
    ("repvit:alternating_se", "repvit_m0_9", {"distillation": False}, 5_103_560),
    ("convnext:resnet50", "resnet50", {}, 25_557_032),
    ("convnext:separate_downsampling", "convnext_tiny", {}, 28_589_128),
    ("visformer:deit_s", "deit_small_patch16_224", {}, 22_050_664),
    ("visformer:visformer_s", "visformer_small", {}, 40_219_592),
]


# The ViTs run at 224 px (a second or two each): the fast tier counts their parameters, the
# full suite runs every check; `roadmap verify` (tests/arch/test_visformer.py) runs in both.
HEAVY = [
    pytest.param(*e, marks=pytest.mark.slow) if e[0].startswith("visformer") else e
    for e in ENDPOINTS
]


def img_size(step: str) -> int:
    """The resolution the endpoint's timm model takes: 224 for the ViTs, else 64 (fast)."""
    return 224 if step.startswith("visformer") else 64


def ours_at(endpoint: str, **kwargs) -> nn.Module:
    name, step = endpoint.split(":")
    return roadmap.build_model(step, roadmap=name, **kwargs)


def layer_scales(model: nn.Module) -> list[nn.Parameter]:
    """Parameters a block holds itself (ConvNeXt's ``gamma``), in module order."""
    return [p for n, p in model.named_parameters() if n.endswith("gamma")]


def free_tensors(model: nn.Module) -> list[nn.Parameter]:
    """A ViT's class token and position embeddings (timm's model holds them at its top, ours
    in blocks of their own), in the order they are registered, which is the order used."""
    return [p for n, p in model.named_parameters() if n.endswith("cls_token") or "pos_embed" in n]


@pytest.mark.parametrize(("step", "timm_name", "kwargs", "params"), ENDPOINTS)
def test_param_count_equals_timm(step, timm_name, kwargs, params):
    ours = ours_at(step)
    theirs = timm.create_model(timm_name, **kwargs)
    assert sum(p.numel() for p in ours.parameters()) == params
    assert sum(p.numel() for p in theirs.parameters()) == params


@pytest.mark.parametrize(("step", "timm_name", "kwargs", "params"), HEAVY)
def test_layer_sequence_equals_timm(step, timm_name, kwargs, params):
    ours = executed_layers(ours_at(step), img_size(step))
    theirs = executed_layers(timm.create_model(timm_name, **kwargs), img_size(step))
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert signature(a) == signature(b), f"layer {i} differs"


@pytest.mark.parametrize(("step", "timm_name", "kwargs", "params"), HEAVY)
def test_same_function_as_timm_with_the_same_weights(step, timm_name, kwargs, params):
    """Copy timm's weights layer by layer into ours: the logits must then be identical."""
    size = img_size(step)
    theirs = calibrate_bn(timm.create_model(timm_name, num_classes=10, **kwargs), size)
    # timm's Visformer computes attention by hand unless told to use torch's fused kernel (its
    # "experimental" path); ours calls scaled_dot_product_attention, as timm's ViT does. With
    # the fused path the two agree to the bit; by hand, the rounding differs (~1e-4 of these
    # logits once the position embeddings below are large).
    for m in theirs.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = True
    ours = ours_at(step, num_classes=10).eval()
    for a, b in zip(executed_layers(ours, size), executed_layers(theirs, size), strict=True):
        a.load_state_dict(b.state_dict())
    with torch.no_grad():
        for a, b in zip(layer_scales(ours), layer_scales(theirs), strict=True):
            a.copy_(b)
        for a, b in zip(free_tensors(ours), free_tensors(theirs), strict=True):
            a.copy_(torch.randn_like(b))  # from the start's 1e-6 and 0.02 to a telling size
            b.copy_(a)
    x = torch.randn(2, 3, 96 if size == 64 else size, 96 if size == 64 else size)
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert expected.abs().max() > 1e-3  # a meaningful comparison, not zeros against zeros
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("step", "timm_name", "kwargs", "params"), HEAVY)
def test_initialization_follows_the_reference(step, timm_name, kwargs, params):
    """Every layer starts from the reference's distribution (same spread, not same seed).

    A sample's standard deviation differs from the true one by about 1/sqrt(2n) relative, so
    the tolerance is five of those plus 2 %; BatchNorm weights and biases must match exactly
    (ones, or the zeros a residual MLP's last BN starts with).
    """
    torch.manual_seed(0)
    ours_model = ours_at(step)
    torch.manual_seed(1)
    theirs_model = timm.create_model(timm_name, **kwargs)
    for a, b in zip(layer_scales(ours_model), layer_scales(theirs_model), strict=True):
        assert torch.equal(a, b)
    free = list(zip(free_tensors(ours_model), free_tensors(theirs_model), strict=True))
    for a, b in free:  # class token N(0, 1e-6), position embeddings truncated N(0, 0.02)
        assert a.shape == b.shape and abs(a.std() / b.std() - 1) < 0.1
    assert len(free) == {"deit_s": 2, "visformer_s": 3}.get(step.split(":")[1], 0)
    size = img_size(step)
    ours, theirs = executed_layers(ours_model, size), executed_layers(theirs_model, size)
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        if isinstance(a, _NORMS):
            assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias), i
            continue
        n = a.weight.numel()
        ratio = (a.weight.std() / b.weight.std()).item()
        assert abs(ratio - 1) < 5 / (2 * n) ** 0.5 + 0.02, f"layer {i} {a}: std ratio {ratio:.3f}"
        assert abs(a.weight.mean().item()) < 5 * b.weight.std().item() / n**0.5 + 1e-6, i
        if a.bias is not None:
            assert (a.bias == 0).all() == (b.bias == 0).all(), f"layer {i}: bias init differs"
