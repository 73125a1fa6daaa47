"""The timm model contract, checked the way timm's own tests check every model in its registry.

Parametrized over every registered step (so a new step is covered the day it is added), plus
the paper's control and two leave-one-outs built through the Python API, and every step of
ConvNeXt's and Visformer's roadmaps. At the endpoints, the contract's numbers must equal timm's
own `mobilenetv3_large_100`, `repvit_m0_9`, `resnet50`, `convnext_tiny`,
`deit_small_patch16_224` and `visformer_small`.

A network whose features are tokens (DeiT-S, before the transition's first step) keeps timm's
ViT contract: ``forward_features`` returns the tokens (B, N, C), class token first, and its
intermediate features are maps without the class token (``output_fmt="NCHW"``), one per
reduction: DeiT-S has one level, at 1/16, where timm's ViT offers each block as one.
"""

import pytest
import timm
import torch
from torch import nn

import roadmap
from roadmap.arch.builder import RoadmapNet, build
from roadmap.arch.selection import Selection
from tests.helpers import representative

IMG = 64  # divisible by 32, small enough to keep ~15 networks fast
CONTROL = ("mobilenetv3_large", "gelu", "expansion_2", "widen")
ABLATIONS = [
    Selection(CONTROL, "repvit"),
    Selection.of("repvit", skip=["kernel_3x3"]),
    Selection.of("repvit", "deeper_downsampling", skip=["early_conv_stem"]),
]

roadmap.register_timm_models()
pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:`torch.jit"),  # deprecated in torch, still timm's API
]


# Every step of every built-in roadmap, by its timm name.
TIMM_NAMES = [f"roadmap_{s}" for s in roadmap.list_steps("repvit")]
CONVNEXT_NAMES = [f"roadmap_convnext_{s}" for s in roadmap.list_steps(roadmap="convnext")]
VISFORMER_NAMES = [f"roadmap_visformer_{s}" for s in roadmap.list_steps(roadmap="visformer")]
# Visformer's forms: tokens (DeiT-S), a map with LayerNorm (its first step), and its end, which
# holds every other layer the steps between add (BatchNorm, grouped 3x3 MLP convs, blocks with
# and without attention, position embeddings on maps). The per-network checks take these three
# (each builds 22-45 M parameters); the config and feature checks take every step.
VISFORMER_FORMS = [f"roadmap_visformer_{s}" for s in ("deit_s", "global_pool", "visformer_s")]
# The fast tier checks RepViT's two ends (the timm references; ConvNeXt's are held against timm
# in tests/arch/test_endpoints.py and here by the full suite, which checks every step).
TIMM_ENDS = (0, len(TIMM_NAMES) - 1)
ALL_NAMES = representative(TIMM_NAMES + CONVNEXT_NAMES + VISFORMER_NAMES, keep=TIMM_ENDS)


def networks() -> list[tuple[str, object]]:
    """(id, factory) for every timm-registered step and the API-built ablations."""
    out = [(name, _timm_factory(name)) for name in TIMM_NAMES + CONVNEXT_NAMES + VISFORMER_FORMS]
    return out + [(a.name, _api_factory(a)) for a in ABLATIONS]


def _timm_factory(name: str):  # noqa: ANN202
    return lambda **kw: timm.create_model(name, **kw)


def _api_factory(selection: Selection):  # noqa: ANN202
    def make(num_classes: int = 1000, global_pool: str | None = None) -> RoadmapNet:
        model = build(selection.spec(1000))
        model.reset_classifier(num_classes, global_pool)
        return model

    return make


NETWORKS = networks()
# The slowest checks (TorchScript and fx, gradient checkpointing) take one ConvNeXt step per form
# of its blocks; the other checks take every step.
CONVNEXT_FORMS = [
    f"roadmap_convnext_{s}"
    for s in (
        "resnet50",  # bottleneck, ResNet's stem
        "depthwise_conv",  # depthwise bottleneck, BatchNorm patchify stem
        "move_up_dw",  # ConvNeXt block with BatchNorm after every conv, projection shortcuts
        "fewer_norms",  # one BatchNorm, one activation
        "layer_norm",  # LayerNorm, channels-last linear layers
        "separate_downsampling",  # patch merging, LayerNorm head: ConvNeXt-T
    )
]
CONVNEXT_FORMS += VISFORMER_FORMS
OTHERS = CONVNEXT_NAMES + VISFORMER_FORMS
FORM_NETWORKS = [(n, m) for n, m in NETWORKS if n not in OTHERS or n in CONVNEXT_FORMS]
FORM_IDS = [n for n, _ in FORM_NETWORKS]
FORM_NAMES = [n for n in TIMM_NAMES + OTHERS if n in TIMM_NAMES or n in CONVNEXT_FORMS]
ENDPOINTS = TIMM_ENDS
IDS = [name for name, _ in NETWORKS]


@pytest.mark.parametrize(("name", "make"), representative(NETWORKS, keep=ENDPOINTS), ids=IDS)
def test_forward_and_backward(name: str, make) -> None:  # noqa: ANN001
    model = make(num_classes=42).train()
    out = model(torch.randn(2, 3, IMG, IMG))
    out.mean().backward()
    assert out.shape == (2, 42) and not torch.isnan(out).any()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing


@pytest.mark.parametrize(("name", "make"), representative(NETWORKS, keep=ENDPOINTS), ids=IDS)
def test_features_head_and_classifier_agree(name: str, make) -> None:  # noqa: ANN001
    """forward_features, num_features, head_hidden_size and the classifier fit together."""
    model = make().eval()
    x = torch.randn(1, 3, IMG, IMG)
    with torch.no_grad():
        features = model.forward_features(x)
        side = IMG // model.feature_info[-1]["reduction"]  # 1/32, or 1/16 before the stages
        if model.tokens:  # timm's ViT: the tokens, class token first
            assert features.shape == (1, model.num_prefix_tokens + side**2, model.num_features)
        else:
            assert features.shape == (1, model.num_features, side, side)
        pre_logits = model.forward_head(features, pre_logits=True)
        assert pre_logits.shape == (1, model.head_hidden_size)
        assert torch.allclose(model.forward_head(features), model(x))
        assert model.get_classifier()(pre_logits).shape == (1, model.num_classes)
        model.reset_classifier(0)  # a backbone: pooled features out
        assert model(x).shape == (1, model.head_hidden_size)
        model.reset_classifier(0, "")  # no pooling: the feature map (or the tokens) out
        if model.tokens:
            assert model(x).shape == features.shape
        else:
            assert model(x).shape[:2] == (1, model.head_hidden_size) and model(x).ndim == 4
        head = model.spec.head  # a layer after the pooling fixes the pooled width
        fixed = head.hidden_channels is not None or head.pool_norm or model.tokens
        model.reset_classifier(0, "max" if fixed else "catavgmax")
        assert model(x).ndim == 2


@pytest.mark.parametrize("name", ALL_NAMES)
def test_default_cfg_names_real_layers(name: str) -> None:
    # shapes only: made on the meta device, where nothing is allocated or computed
    model = timm.create_model(name, device="meta")
    cfg, state = model.pretrained_cfg, model.state_dict()
    assert f"{cfg['first_conv']}.weight" in state and f"{cfg['classifier']}.weight" in state
    assert cfg["input_size"] == (3, 224, 224)
    with torch.no_grad():
        x = torch.empty(1, *cfg["input_size"], device="meta")
        features = model.eval().forward_features(x)
    if model.tokens:  # tokens have no pool size, as in timm's ViT
        assert cfg["pool_size"] is None and features.ndim == 3
    else:  # 1/32 (1/16 for the transition's first step, before its stages)
        assert tuple(features.shape[-2:]) == cfg["pool_size"]
        assert cfg["pool_size"] == ((14, 14) if name.endswith("global_pool") else (7, 7))


@pytest.mark.parametrize(("name", "make"), representative(NETWORKS, keep=ENDPOINTS), ids=IDS)
def test_intermediates_match_feature_info(name: str, make) -> None:  # noqa: ANN001
    model = make().eval()
    x = torch.randn(1, 3, IMG, IMG)
    info = model.feature_info
    with torch.no_grad():
        final, feats = model.forward_intermediates(x)
        assert torch.equal(final, model.forward_features(x))
        assert [f.shape[1] for f in feats] == [i["num_chs"] for i in info]
        assert [IMG // f.shape[-1] for f in feats] == [i["reduction"] for i in info]
        n = min(2, len(info))  # DeiT-S has one level
        last_two = model.forward_intermediates(x, indices=n, intermediates_only=True)
        assert all(torch.equal(a, b) for a, b in zip(last_two, feats[-n:], strict=True))
        early = model.forward_intermediates(x, indices=[0], stop_early=True)[1]
        assert torch.equal(early[0], feats[0])


@pytest.mark.parametrize("name", ALL_NAMES)
def test_features_only_through_timm(name: str) -> None:
    model = timm.create_model(name, features_only=True).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, IMG, IMG))
    assert [o.shape[1] for o in outs] == model.feature_info.channels()
    assert [IMG // o.shape[-1] for o in outs] == model.feature_info.reduction()
    # DeiT-S and its first step have one level (all at 1/16), the later steps three; the
    # convolutional roadmaps four or five
    single = name.endswith(("deit_s", "global_pool"))
    assert len(outs) >= (1 if single else 3 if "visformer" in name else 4)
    pruned = timm.create_model(name, features_only=True, out_indices=(min(1, len(outs) - 1),))
    whole = model if len(outs) > 1 else timm.create_model(name, num_classes=0)
    full = sum(p.numel() for p in whole.parameters())
    assert sum(p.numel() for p in pruned.parameters()) < full  # the layers after it are gone


@pytest.mark.parametrize("name", representative(FORM_NAMES, keep=TIMM_ENDS))
def test_grad_checkpointing_gives_the_same_gradients(name: str) -> None:
    model = timm.create_model(name, num_classes=5).train()
    x = torch.randn(2, 3, IMG, IMG)
    torch.manual_seed(0)
    model(x).sum().backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing()
    torch.manual_seed(0)
    model(x).sum().backward()
    for n, p in model.named_parameters():
        assert torch.allclose(p.grad, plain[n], atol=1e-5, rtol=1e-4), n


@pytest.mark.parametrize(
    ("name", "make"), representative(FORM_NETWORKS, keep=ENDPOINTS), ids=FORM_IDS
)
@pytest.mark.filterwarnings("ignore:The TorchScript type system")  # fx's generated module
def test_torchscript_fx_and_fx_then_torchscript(name: str, make) -> None:  # noqa: ANN001
    model = make(num_classes=10).eval()
    x = torch.randn(1, 3, IMG, IMG)
    with torch.no_grad():
        expected = model(x)
        scripted = torch.jit.script(model)
        traced = torch.fx.symbolic_trace(model)
        both = torch.jit.script(traced)
        for other in (scripted, traced, both):
            assert torch.allclose(other(x), expected, atol=1e-5)


@pytest.mark.parametrize(
    ("step", "reference", "kwargs"),
    [
        ("mobilenetv3_large", "mobilenetv3_large_100", {}),
        ("alternating_se", "repvit_m0_9", {"distillation": False}),
        ("convnext_resnet50", "resnet50", {}),
        ("convnext_separate_downsampling", "convnext_tiny", {}),
    ],
)
def test_endpoints_keep_timms_contract(step: str, reference: str, kwargs: dict) -> None:
    ours = timm.create_model(f"roadmap_{step}").eval()
    theirs = timm.create_model(reference, **kwargs).eval()
    x = torch.randn(1, 3, 224, 224)
    assert (ours.num_features, ours.head_hidden_size) == (
        theirs.num_features,
        theirs.head_hidden_size,
    )
    with torch.no_grad():
        assert ours.forward_features(x).shape == theirs.forward_features(x).shape
    ours_f = timm.create_model(f"roadmap_{step}", features_only=True)
    theirs_f = timm.create_model(reference, features_only=True, **kwargs)
    assert ours_f.feature_info.channels() == theirs_f.feature_info.channels()
    assert ours_f.feature_info.reduction() == theirs_f.feature_info.reduction()


def test_a_pooling_without_a_classifier_is_the_only_headless_choice() -> None:
    with pytest.raises(roadmap.RoadmapError, match="set num_classes to 0"):
        timm.create_model("roadmap_gelu", global_pool="")
    assert isinstance(
        timm.create_model("roadmap_gelu", num_classes=0).get_classifier(), nn.Identity
    )


FORMS = {
    "classifier": {},
    "backbone": {"num_classes": 0},
    "feature_map": {"num_classes": 0, "global_pool": ""},
    "features_only": {"features_only": True},
}


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("name", representative(sorted(timm.list_models("roadmap_*"))))
def test_every_form_carries_timms_config(name: str, form: str) -> None:
    """Code that prepares a detector's input reads ``model.pretrained_cfg["mean"]``: every
    model timm creates for us has it, in every form, as timm's own models do (made on the
    meta device: the config is what is checked, not the weights)."""
    model = timm.create_model(name, device="meta", **FORMS[form])
    assert model.pretrained_cfg is model.default_cfg
    assert model.pretrained_cfg["mean"] == timm.data.IMAGENET_DEFAULT_MEAN
    config = timm.data.resolve_data_config({}, model=model)
    assert config["input_size"] == (3, 224, 224)
    if form == "features_only":  # as timm's feature models: no classifier entries
        assert "classifier" not in model.pretrained_cfg
