"""The RepViT paper's roadmap (MobileNetV3-L -> RepViT-M0.9), one module per step.

Importing this package registers the roadmap (``repvit``), its block kinds and every step, in
the order of ``ROADMAP``; the project's ``pyproject.toml`` declares it as a ``roadmap.steps``
entry point, as any roadmap package is. A module's docstring is its lesson: ``roadmap explain
STEP`` prints it. The command line picks this roadmap when no ``--roadmap`` is given, and its
networks keep the bare names they were filed under before a second roadmap existed
(``widen``, not ``repvit.widen``).
"""

import importlib

from roadmap.arch import blocks, paper
from roadmap.arch.family import Size
from roadmap.arch.paper import PaperResult
from roadmap.arch.roadmaps import PaperColumn, Roadmap, register_roadmap

# The block kinds of this roadmap: declared now, imported (with torch) when a spec uses them.
for _kind in ("inverted_residual", "repvit", "downsample"):
    blocks.declare_block_kind(_kind, f"{__name__}.blocks.{_kind}")

# The paper's family (Table 1: M0.9 ... M2.3; the official README's M0.6): the roadmap's end
# with other stage widths and depths (``--size m1_5``).
FAMILY = (
    Size("m0_6", (40, 80, 160, 320), (1, 1, 8, 1)),
    Size("m0_9", (48, 96, 192, 384), (2, 2, 14, 2), timm_name="repvit_m0_9"),
    Size("m1_0", (56, 112, 224, 448), (2, 2, 14, 2), timm_name="repvit_m1_0"),
    Size("m1_1", (64, 128, 256, 512), (2, 2, 12, 2), timm_name="repvit_m1_1"),
    Size("m1_5", (64, 128, 256, 512), (4, 4, 24, 4), timm_name="repvit_m1_5"),
    Size("m2_3", (80, 160, 320, 640), (6, 6, 34, 2), timm_name="repvit_m2_3"),
)  # fmt: skip

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

REPVIT = register_roadmap(
    Roadmap(
        name="repvit",
        label="RepViT",
        title="MobileNetV3-L -> RepViT-M0.9",
        citation="Wang, Chen, Lin, Han, Ding: RepViT: Revisiting Mobile CNN From ViT "
        "Perspective, CVPR 2024 (arXiv 2307.09283)",
        package=__name__,
        order=ROADMAP,
        accuracy=PaperColumn("paper top-1 %", "%", "ImageNet-1K, no distillation"),
        speed=PaperColumn("paper ms", "ms", "iPhone 12, Core ML, batch 1", lower_is_better=True),
        references=(
            ("mobilenetv3_large", "mobilenetv3_large_100"),
            ("alternating_se", "repvit_m0_9"),
        ),
        family=FAMILY,
        bare_names=True,
    )
)

# The paper's control experiment (§3.2): expansion ratio 2 and the wider stages applied to the
# original MobileNetV3 blocks, i.e. without separate_mixers. Reported, not adopted.
CONTROL = ("mobilenetv3_large", "gelu", "expansion_2", "widen")

for _name in ROADMAP:
    importlib.import_module(f"{__name__}.{_name}")

# What the paper reports beyond the steps (each step reports its own numbers where it is
# registered): the control, and the family it scaled the roadmap's result to (Table 1's
# iPhone 12 latencies, Table 2's top-1 without distillation, 300 epochs; M0.6 from the
# official README, "~0.6 ms", no top-1).
paper.report("widen-separate_mixers", PaperResult(73.0, 0.91, "the paper's control", "§3.2"))
for _size, _top1, _ms in (
    ("m0_6", None, 0.6),
    ("m0_9", 77.4, 0.9),
    ("m1_0", 78.6, 1.0),
    ("m1_1", 79.4, 1.1),
    ("m1_5", 81.2, 1.5),
    ("m2_3", 82.5, 2.3),
):
    _source = "official README" if _top1 is None else "Tables 1 and 2"
    paper.report(f"{ROADMAP[-1]}@{_size}", PaperResult(_top1, _ms, "", _source))
