"""Every roadmap step is also a timm model: ``timm.create_model("roadmap_<step>")``.

:func:`register_timm_models` registers ``roadmap_<step>`` for every step known at that moment
(call it again after loading plugin steps); it is explicit, not a side effect of an import, so
the order in which ``roadmap``, ``steps`` and plugins are imported does not matter. The model
is the roadmap up to and including that step, built through timm's ``build_model_with_cfg``, so
it carries a ``pretrained_cfg`` (ImageNet mean/std, 224 px, crop 0.875, bicubic: the
MobileNetV3 evaluation in timm) and accepts timm's usual keyword arguments: ``num_classes``,
``in_chans`` and ``drop_rate`` (the head's dropout). There are no published weights;
``pretrained=True`` only makes sense with a ``pretrained_cfg_overlay=dict(file=...)`` pointing
at your own checkpoint.

timm's scripts do not register our models, so run them through ``roadmap.interop.timm_run``, which
registers them first and then runs the script unchanged::

    python -m roadmap.interop.timm_run path/to/timm/benchmark.py \
        --model roadmap_alternating_se --reparam
"""

from __future__ import annotations

from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, register_model
from timm.models._builder import pretrained_cfg_for_features
from timm.models._features import FeatureGetterNet

from roadmap.arch.blocks import get_block_kind
from roadmap.arch.builder import RoadmapNet, feature_levels
from roadmap.arch.registry import list_steps, load_everything
from roadmap.arch.roadmaps import get_roadmap, roadmap_names
from roadmap.arch.selection import Selection
from roadmap.arch.spec import NetSpec, ends_in_tokens, replace
from roadmap.errors import RoadmapError
from roadmap.interop.pretrained import load_pretrained

PREFIX = "roadmap_"
# Module-level, because timm's register_model looks up a model's cfg in its module's
# ``default_cfgs``.
default_cfgs: dict[str, dict[str, Any]] = {}
__all__ = ["register_timm_models"]  # register_model appends every model name


def pretrained_cfg(spec: NetSpec) -> dict[str, Any]:
    """timm's data/eval config for a spec; no URL (there are no published weights)."""
    first = spec.stem[0] if spec.stem else spec.stages[0].downsample[0]
    path = "stem.0" if spec.stem else "stages.0.downsample.0"
    reduction = feature_levels(spec)[0][-1]["reduction"]
    return {
        "url": "",
        "num_classes": spec.num_classes,
        "input_size": (3, 224, 224),
        # the last feature map's size (7 x 7 at 1/32); tokens have none, as in timm's ViT
        "pool_size": None if ends_in_tokens(spec) else (224 // reduction,) * 2,
        "crop_pct": 0.875,  # timm's MobileNetV3-L evaluation crop (RepViT uses 0.95)
        "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        # the first conv (a ConvNorm's, still there once fused; a patch embedding's proj)
        "first_conv": f"{path}.{get_block_kind(first.kind).first_conv}",
        "classifier": "head.classifier.fc" if spec.head.norm else "head.classifier",
        "license": "mit",
    }


def _net(
    *,
    network: Selection,
    num_classes: int = 1000,
    in_chans: int = 3,
    drop_rate: float | None = None,
    global_pool: str | None = None,
    device: Any = None,
    dtype: Any = None,
) -> RoadmapNet:
    """The model class timm instantiates: the network with timm's overrides (and, as timm's
    own models take them, the device and dtype to make it on: made there, not moved there, so
    that ``device="meta"`` costs no memory and no initialization time)."""
    spec = network.spec(1000)
    head = spec.head
    if drop_rate is not None:
        head = replace(head, dropout=drop_rate)
    if global_pool is not None:
        head = replace(head, pool=global_pool)
    spec = replace(spec, num_classes=num_classes, in_channels=in_chans, head=head)
    if device is None:
        model = RoadmapNet(spec)
    else:
        with torch.device(device):
            model = RoadmapNet(spec)
    return model.to(dtype=dtype) if dtype else model


def _entrypoint(name: str, network: Selection, doc: str):  # noqa: ANN202 (timm's signature)
    def create(pretrained: bool = False, **kwargs: Any) -> RoadmapNet:
        levels = len(RoadmapNet.levels_of(network.spec()))
        overlay = kwargs.pop("pretrained_cfg_overlay", None) or {}
        features_only = kwargs.pop("features_only", False)
        out_indices = kwargs.pop("out_indices", tuple(range(levels)))
        feature_cls = kwargs.pop("feature_cls", None)
        if feature_cls not in (None, "getter"):
            raise ValueError(
                f"{name} serves features through forward_intermediates (feature_cls='getter', "
                f"as timm's ViTs do), not {feature_cls!r}"
            )
        model = build_model_with_cfg(_net, name, False, network=network, **kwargs)
        if pretrained:  # timm's weights for the matching timm model, mapped onto ours
            load_pretrained(model, network, file=overlay.get("file"))
        if features_only:  # through forward_intermediates (timm's "getter"), as timm wraps it
            cfg = pretrained_cfg_for_features(model.pretrained_cfg)
            model = FeatureGetterNet(model, out_indices=out_indices)
            model.pretrained_cfg = model.default_cfg = cfg  # timm's feature models carry theirs
        return model

    create.__name__ = create.__qualname__ = name  # timm registers by __name__
    create.__doc__ = doc
    return create


def timm_networks() -> dict[str, tuple[Selection, str]]:
    """Our timm names: every step's prefix in every roadmap (``roadmap_<roadmap>_<step>``, or
    ``roadmap_<step>`` for the roadmap with bare names), and every roadmap's family at the
    paper's sizes (``roadmap_<roadmap>_<size>``: ``roadmap_repvit_m1_5``,
    ``roadmap_convnext_b``)."""
    load_everything()
    out = {}
    for roadmap in map(get_roadmap, roadmap_names()):
        road = roadmap.option()
        for step in list_steps(roadmap):
            doc = f"The {roadmap.name} roadmap up to {step!r} (``roadmap build --upto {step}"
            doc += f"{road}``)."
            name = PREFIX + ("" if roadmap.bare_names else f"{roadmap.name}_") + step
            out[name] = (Selection.of(roadmap, step), doc)
        for size in roadmap.family:
            doc = f"{roadmap.display} at size {size.label} (``roadmap build --size {size.label}"
            doc += f"{road}``)."
            name = f"{PREFIX}{roadmap.name}_{size.label}"
            if name in out:
                raise RoadmapError(f"timm name {name} is both a step's and a family member's")
            out[name] = (Selection.of(roadmap, size=size.label), doc)
    return out


def register_timm_models() -> list[str]:
    """Register every network of :func:`timm_networks` not yet registered (call it again after
    loading plugin steps); returns all our names."""
    for name, (network, doc) in timm_networks().items():
        if name not in default_cfgs:
            default_cfgs[name] = pretrained_cfg(network.spec())
            register_model(_entrypoint(name, network, doc))
    return list(default_cfgs)
