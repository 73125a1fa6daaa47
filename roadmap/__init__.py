"""roadmap: the RepViT modernization roadmap (MobileNetV3-L -> RepViT-M0.9) as software.

Python API::

    import roadmap
    roadmap.list_steps()                          # the eleven steps, in order
    spec = roadmap.build_spec("simple_classifier")  # NetSpec after steps 0..7
    model = roadmap.build_model(steps=["mobilenetv3_large", "gelu"], num_classes=10)
    deploy = roadmap.fuse(model)                  # the deploy form (eval mode, branches folded)
"""

from collections.abc import Iterable, Sequence

from torch import nn

from roadmap.build import build
from roadmap.errors import RoadmapError
from roadmap.registry import build_spec, get_step, list_steps, register_step, resolve_steps
from roadmap.reparam import fuse
from roadmap.spec import NetSpec, diff, spec_hash
from roadmap.timm_models import register_timm_models

__version__ = "0.1.0"

register_timm_models()  # timm.create_model("roadmap_<step>") works after `import roadmap`


def build_model(
    upto: str | None = None,
    *,
    steps: Sequence[str] | None = None,
    skip: Iterable[str] = (),
    num_classes: int = 1000,
) -> nn.Module:
    """The training-form network after the resolved steps (arguments as in ``build_spec``)."""
    return build(build_spec(upto, steps=steps, skip=skip, num_classes=num_classes))


__all__ = [
    "NetSpec",
    "RoadmapError",
    "build",
    "build_model",
    "build_spec",
    "diff",
    "fuse",
    "get_step",
    "list_steps",
    "register_step",
    "register_timm_models",
    "resolve_steps",
    "spec_hash",
]
