"""roadmap: modernization roadmaps (RepViT's, ConvNeXt's, your own) as software.

Python API (every call that needs a roadmap names it; nothing picks one for you)::

    import roadmap
    roadmap.roadmap_names()                # the installed roadmaps: ['repvit', 'convnext', ...]
    rv = roadmap.get_roadmap('repvit')     # one of them, as a value
    roadmap.list_steps(rv)                 # its eleven steps, in order
    spec = roadmap.build_spec('simple_classifier', roadmap=rv)  # the spec after steps 0..7
    model = roadmap.build_model(steps=['mobilenetv3_large', 'gelu'], num_classes=10, roadmap=rv)
    deploy = roadmap.fuse(model)           # the deploy form (eval mode, branches folded)
    roadmap.register_timm_models()         # timm.create_model('roadmap_<step>')

The names below (``roadmap.__all__``) are the public API, the one a plugin or a roadmap of
your own builds on: specs and their edits, steps, roadmaps, block kinds, the layers that fold
(``ConvNorm``, ``fold_bn_into_conv``) and the diagram's nodes (``Box``, ``Seq``, ``Par``,
``Res``), and the check that a network equals its reference (``check_reference``). Modules
below ``roadmap.`` are the tool's own and may change between versions.

Importing the package is cheap and has no side effects: names are loaded on first use (torch
only when a network is built), and the timm models are registered when you ask for them.
"""

import importlib
from typing import Any

__version__ = "0.3.0"

# name -> module that defines it; loaded on first access (PEP 562)
_EXPORTS = {
    "RoadmapError": "roadmap.errors",
    "PreconditionError": "roadmap.errors",
    "NetSpec": "roadmap.arch.spec",
    "StageSpec": "roadmap.arch.spec",
    "BlockSpec": "roadmap.arch.spec",
    "HeadSpec": "roadmap.arch.spec",
    "SESpec": "roadmap.arch.spec",
    "replace": "roadmap.arch.spec",
    "validate": "roadmap.arch.spec",
    "diff": "roadmap.arch.spec_diff",
    "spec_hash": "roadmap.arch.spec",
    "map_blocks": "roadmap.arch.edit",
    "map_stages": "roadmap.arch.edit",
    "set_depths": "roadmap.arch.edit",
    "set_widths": "roadmap.arch.edit",
    "alternate": "roadmap.arch.edit",
    "replace_stem": "roadmap.arch.edit",
    "has_kind": "roadmap.arch.edit",
    "set_fields": "roadmap.arch.edit",
    "require_stages": "roadmap.arch.edit",
    "register_step": "roadmap.arch.registry",
    "Roadmap": "roadmap.arch.roadmaps",
    "PaperColumn": "roadmap.arch.roadmaps",
    "register_roadmap": "roadmap.arch.roadmaps",
    "get_roadmap": "roadmap.arch.roadmaps",
    "roadmap_names": "roadmap.arch.roadmaps",
    "BlockKind": "roadmap.arch.blocks",
    "register_block_kind": "roadmap.arch.blocks",
    "declare_block_kind": "roadmap.arch.blocks",
    "lazy": "roadmap.arch.blocks",
    "Size": "roadmap.arch.family",
    "get_block_kind": "roadmap.arch.blocks",
    "block_kinds": "roadmap.arch.blocks",
    "get_step": "roadmap.arch.registry",
    "list_steps": "roadmap.arch.registry",
    "resolve_steps": "roadmap.arch.registry",
    "build_spec": "roadmap.arch.registry",
    "Selection": "roadmap.arch.selection",
    "build": "roadmap.arch.builder",
    "build_model": "roadmap.arch.builder",
    "fuse": "roadmap.arch.reparam",
    "ConvNorm": "roadmap.arch.layers",
    "fold_bn_into_conv": "roadmap.arch.layers",
    "make_act": "roadmap.arch.layers",
    "init_goog": "roadmap.arch.layers",
    "Box": "roadmap.arch.anatomy",
    "Seq": "roadmap.arch.anatomy",
    "Par": "roadmap.arch.anatomy",
    "Res": "roadmap.arch.anatomy",
    "check_reference": "roadmap.interop.reference",
    "ReferenceCheck": "roadmap.interop.reference",
    "register_timm_models": "roadmap.interop.timm_models",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # the next access skips this function
        return value
    raise AttributeError(f"module 'roadmap' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
