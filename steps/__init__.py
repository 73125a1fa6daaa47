"""The RepViT paper's roadmap, one module per step. ``ROADMAP`` is the order.

Importing this package registers every step with :mod:`roadmap.arch.registry`, in this order.
A module's docstring is its lesson: ``roadmap explain STEP`` prints it.
"""

import importlib

ROADMAP = (
    "mobilenetv3_large",
    "gelu",
    "separate_mixers",
    "expansion_2",
    "widen",
    "early_conv_stem",
    "deeper_downsampling",
    "simple_classifier",
    "stage_ratio",
    "kernel_3x3",
    "alternating_se",
)

# The paper's control experiment (§3.2): expansion ratio 2 and the wider stages applied to the
# original MobileNetV3 blocks, i.e. without separate_mixers. Reported, not adopted.
PAPER_CONTROL = {
    "steps": ("mobilenetv3_large", "gelu", "expansion_2", "widen"),
    "paper_top1": 73.0,
    "paper_latency_ms": 0.91,
}

for _name in ROADMAP:
    importlib.import_module(f"steps.{_name}")
