"""The deploy form: fold every re-parameterizable branch and every BatchNorm that can be folded.

``fuse(model)`` walks the module tree the way ``timm.utils.reparameterize_model`` does: a child
that has ``fuse()`` is replaced by what it returns, then the walk descends into the result.
Only modules that know how to fold themselves define ``fuse()`` (see :mod:`roadmap.arch.layers`),
so nothing is ever replaced by ``Identity``: a BatchNorm the walk cannot fold stays, and
:func:`unfused_norms` lists it.
"""

from __future__ import annotations

import copy

from torch import nn

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def fuse(model: nn.Module) -> nn.Module:
    """A fused deep copy of ``model`` in eval mode; the original is left untouched."""
    fused = copy.deepcopy(model).eval()
    _fuse_children(fused)
    return fused


def _fuse_children(module: nn.Module) -> None:
    for name, child in module.named_children():
        if hasattr(child, "fuse"):
            child = child.fuse()
            setattr(module, name, child)
        _fuse_children(child)


def unfused_norms(model: nn.Module) -> list[str]:
    """Names of the BatchNorm layers still present (empty for every roadmap step once fused)."""
    return [name for name, m in model.named_modules() if isinstance(m, _NORMS)]
