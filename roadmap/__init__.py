"""roadmap: the RepViT modernization roadmap (MobileNetV3-L -> RepViT-M0.9) as software.

Python API::

    import roadmap
    roadmap.list_steps()                            # the eleven steps, in order
    spec = roadmap.build_spec("simple_classifier")  # NetSpec after steps 0..7
    model = roadmap.build_model(steps=["mobilenetv3_large", "gelu"], num_classes=10)
    deploy = roadmap.fuse(model)                    # the deploy form (eval mode, branches folded)
    roadmap.register_timm_models()                  # timm.create_model("roadmap_<step>")

Importing the package is cheap and has no side effects: names are loaded on first use (torch
only when a network is built), and the timm models are registered when you ask for them.
"""

import importlib
from typing import Any

__version__ = "0.2.0"

# name -> module that defines it; loaded on first access (PEP 562)
_EXPORTS = {
    "RoadmapError": "roadmap.errors",
    "PreconditionError": "roadmap.errors",
    "NetSpec": "roadmap.spec",
    "diff": "roadmap.spec",
    "spec_hash": "roadmap.spec",
    "register_step": "roadmap.registry",
    "get_step": "roadmap.registry",
    "list_steps": "roadmap.registry",
    "resolve_steps": "roadmap.registry",
    "build_spec": "roadmap.registry",
    "Selection": "roadmap.selection",
    "build": "roadmap.builder",
    "build_model": "roadmap.builder",
    "fuse": "roadmap.reparam",
    "register_timm_models": "roadmap.timm_models",
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
