"""Does a network equal its reference implementation? The check every roadmap's ends pass.

Two codebases name their layers differently, so the check pairs layers as ``--pretrained``
does (:mod:`roadmap.interop.pretrained`): in the order a forward pass runs them. It answers
three questions, each with numbers:

- **the same parameters**: the two counts before the classifier (the classifier is held to
  the same function below: timm's RepViT may carry a second, distillation classifier whose
  average is our one);
- **the same layers in the same order**: each executed conv, linear and norm layer's type,
  weight shape, stride, padding, groups and bias (a norm's width and eps), and the first
  pair that differs;
- **the same function**: the reference's norms get random affine parameters and running
  statistics gathered from random images (so that no layer is an identity by accident, and
  the activations keep a trained network's scale), its weights are copied into ours layer
  by layer, and both, in eval mode, classify the same random images: the largest difference
  between the logits, beside the largest logit (a zero difference between zeros proves
  nothing).

``roadmap verify --roadmap NAME`` runs it on a roadmap's two ends against the timm models its
``references`` name (built with random weights: nothing is downloaded); a plugin's tests call
:func:`check_reference` the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import timm
import torch
from torch import nn

from roadmap.arch.builder import build_model
from roadmap.arch.roadmaps import Roadmap, get_roadmap
from roadmap.interop.pretrained import (
    LAYERS,
    copy_by_order,
    copy_classifier,
    executed,
    fixed_input_size,
    state_of,
)

TOLERANCE = 1e-5  # relative to the largest logit: float32 sums in another order, no more


@dataclass(frozen=True)
class ReferenceCheck:
    """What :func:`check_reference` found.

    Attributes:
        params: parameters before the classifier (ours, the reference's).
        layers: executed conv/linear/norm layers (ours, the reference's).
        difference: the first layer pair that differs, in words, or "" when none does.
        max_abs_diff: the largest |logit difference| with the same weights, or None when the
            layers differ (the weights cannot be copied).
        scale: the reference's largest |logit| on the same images.
        img_size: the resolution of the images compared on.
    """

    params: tuple[int, int]
    layers: tuple[int, int]
    difference: str
    max_abs_diff: float | None
    scale: float
    img_size: int = 64

    @property
    def equal(self) -> bool:
        """Same parameters, same layers, same logits (within float32 rounding)."""
        return (
            self.params[0] == self.params[1]
            and not self.difference
            and self.max_abs_diff is not None
            and self.scale > 0
            and self.max_abs_diff <= TOLERANCE * max(1.0, self.scale)
        )


def layer_signature(m: nn.Module) -> tuple:
    """What makes two layers the same layer: type family, weight shape, stride, padding, groups
    and bias (a norm: its width and eps); for tensors a module holds itself (a layer scale, a
    class token, a position embedding), their shapes."""
    family = next((t for t in LAYERS if isinstance(m, t)), None)
    if family is None:
        return ("tensors", tuple(tuple(t.shape) for t in state_of(m)))
    name = family.__name__
    if isinstance(m, nn.Conv2d):
        return name, tuple(m.weight.shape), m.stride, m.padding, m.groups, m.bias is not None
    if isinstance(m, nn.Linear):
        return name, tuple(m.weight.shape), m.bias is not None
    if isinstance(m, nn.LayerNorm):
        return name, m.normalized_shape, m.eps
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return name, m.num_features, m.eps
    return (family.__name__,)


@torch.no_grad()
def calibrate(model: nn.Module, img_size: int = 64, batches: int = 3) -> nn.Module:
    """Give every norm random affine parameters (and a layer scale ``gamma`` random values),
    and every BatchNorm running statistics from random images; returns the model in eval mode.

    Random affine parameters make a comparison non-trivial; statistics gathered from data,
    rather than drawn at random, keep a deep network's activations at a sane scale.
    """
    for name, p in model.named_parameters():
        if name.endswith("gamma"):  # ConvNeXt's layer scale, 1e-6 at init
            nn.init.uniform_(p, 0.5, 1.5)
        if name.endswith("cls_token"):  # a ViT's class token, 1e-6 at init
            nn.init.normal_(p, std=0.5)
    for m in model.modules():
        if isinstance(m, (nn.LayerNorm, nn.modules.batchnorm._BatchNorm)):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.3, 0.3)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # a cumulative average over the calibration batches
            m.reset_running_stats()
    model.train()
    for _ in range(batches):
        model(torch.randn(8, 3, img_size, img_size))
    return model.eval()


def check_reference(
    ours: nn.Module, reference: nn.Module, *, img_size: int = 64, seed: int = 0
) -> ReferenceCheck:
    """Compare ``ours`` with ``reference`` (see the module doc). ``reference`` is calibrated and
    ``ours`` gets its weights: pass models built for the check. The global random state is
    left as it was."""
    params = (_count(ours), _count(reference))
    img_size = fixed_input_size(reference) or img_size  # timm's ViTs take one resolution
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        calibrate(reference, img_size)
        a, b = executed(ours.eval(), img_size), executed(reference, img_size)
        layers = (len(a), len(b))
        difference = _first_difference(a, b)
        if difference:
            return ReferenceCheck(params, layers, difference, None, 0.0, img_size)
        copy_by_order(ours, reference)
        copy_classifier(ours, reference)
        x = torch.randn(2, 3, img_size, img_size)
        with torch.no_grad():
            expected, got = reference(x), ours(x)
    diff = (got - expected).abs().max().item()
    return ReferenceCheck(params, layers, "", diff, expected.abs().max().item(), img_size)


def _count(model: nn.Module) -> int:
    classifier = {id(p) for p in model.get_classifier().parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in classifier)


def _first_difference(a: list[nn.Module], b: list[nn.Module]) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):  # a shorter list: see below
        if layer_signature(x) != layer_signature(y):
            return f"layer {i}: {layer_signature(x)} here, {layer_signature(y)} in the reference"
    if len(a) != len(b):
        longer, which = (a, "this network") if len(a) > len(b) else (b, "the reference")
        extra = layer_signature(longer[min(len(a), len(b))])
        return f"layer {min(len(a), len(b))}: only {which} runs more layers, from {extra}"
    return ""


@dataclass(frozen=True)
class EndCheck:
    """One end of a roadmap held against its reference: the step, the timm model, the check."""

    step: str
    reference: str
    check: ReferenceCheck


def check_roadmap(roadmap: Roadmap | str, *, num_classes: int = 10) -> list[EndCheck]:
    """Check every step of a roadmap that names a timm reference (``Roadmap.references``)
    against that model, both with random weights (see the module doc)."""
    found = []
    for step, timm_name in get_roadmap(roadmap).references:
        ours = build_model(step, roadmap=roadmap, num_classes=num_classes)
        theirs = timm.create_model(timm_name, pretrained=False, num_classes=num_classes)
        found.append(EndCheck(step, timm_name, check_reference(ours, theirs)))
    return found
