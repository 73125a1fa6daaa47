"""The roadmap's endpoints equal timm's networks: same layers in the same order, same function."""

import pytest
import timm
import torch
from torch import nn

import roadmap
from tests.helpers import calibrate_bn, executed_layers, signature

_LAYERS = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)


ENDPOINTS = [
    ("mobilenetv3_large", "mobilenetv3_large_100", {}, 5_483_032),
    ("alternating_se", "repvit_m0_9", {"distillation": False}, 5_103_560),
]


@pytest.mark.parametrize(("step", "timm_name", "kwargs", "params"), ENDPOINTS)
def test_param_count_equals_timm(step, timm_name, kwargs, params):
    ours = roadmap.build_model(step)
    theirs = timm.create_model(timm_name, **kwargs)
    assert sum(p.numel() for p in ours.parameters()) == params
    assert sum(p.numel() for p in theirs.parameters()) == params


@pytest.mark.parametrize(("step", "timm_name", "kwargs", "params"), ENDPOINTS)
def test_layer_sequence_equals_timm(step, timm_name, kwargs, params):
    ours = executed_layers(roadmap.build_model(step))
    theirs = executed_layers(timm.create_model(timm_name, **kwargs))
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert signature(a) == signature(b), f"layer {i} differs"


@pytest.mark.parametrize(("step", "timm_name", "kwargs", "params"), ENDPOINTS)
def test_same_function_as_timm_with_the_same_weights(step, timm_name, kwargs, params):
    """Copy timm's weights layer by layer into ours: the logits must then be identical."""
    theirs = calibrate_bn(timm.create_model(timm_name, num_classes=10, **kwargs))
    ours = roadmap.build_model(step, num_classes=10).eval()
    for a, b in zip(executed_layers(ours), executed_layers(theirs), strict=True):
        a.load_state_dict(b.state_dict())
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert expected.abs().max() > 1e-3  # a meaningful comparison, not zeros against zeros
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("step", "timm_name", "kwargs", "params"), ENDPOINTS)
def test_initialization_follows_the_reference(step, timm_name, kwargs, params):
    """Every layer starts from the reference's distribution (same spread, not same seed).

    A sample's standard deviation differs from the true one by about 1/sqrt(2n) relative, so
    the tolerance is five of those plus 2 %; BatchNorm weights and biases must match exactly
    (ones, or the zeros a residual MLP's last BN starts with).
    """
    torch.manual_seed(0)
    ours = executed_layers(roadmap.build_model(step))
    torch.manual_seed(1)
    theirs = executed_layers(timm.create_model(timm_name, **kwargs))
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        if isinstance(a, nn.BatchNorm1d | nn.BatchNorm2d):
            assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias), i
            continue
        n = a.weight.numel()
        ratio = (a.weight.std() / b.weight.std()).item()
        assert abs(ratio - 1) < 5 / (2 * n) ** 0.5 + 0.02, f"layer {i} {a}: std ratio {ratio:.3f}"
        assert abs(a.weight.mean().item()) < 5 * b.weight.std().item() / n**0.5 + 1e-6, i
        if a.bias is not None:
            assert (a.bias == 0).all() == (b.bias == 0).all(), f"layer {i}: bias init differs"
