"""ConvNeXt's roadmap (Liu et al., CVPR 2022, §2): ResNet-50 to ConvNeXt-T, one step a module.

The paper RepViT copied its method from. Importing this package registers the roadmap
(``convnext``) and its steps, in the paper's order (Figure 2, Table 10 in the appendix). Every
network after the first was trained by the paper with the same modern recipe (``roadmap
recipes``: ``convnext``), so each row isolates one design change. The paper gives top-1 and
GFLOPs after every step; it measured throughput only for the final networks, so this roadmap
has no speed column of the paper's: ``roadmap latency`` measures ours.
"""

import importlib

from roadmap.arch import blocks
from roadmap.arch.family import Size
from roadmap.arch.roadmaps import PaperColumn, Roadmap, register_roadmap

# The block kinds of this roadmap: declared now, imported (with torch) when a spec uses them.
for _module, _kinds in (
    ("resnet", ("resnet_stem", "max_pool", "bottleneck")),
    ("convnext", ("patchify", "patch_merging", "convnext")),
):
    for _kind in _kinds:
        blocks.declare_block_kind(_kind, f"{__name__}.blocks.{_module}")

# The paper's family (§3, its list of ConvNeXt variants; ImageNet-1K models): ConvNeXt-T is the
# roadmap's end; S, B and L keep its design with other stage widths C and depths B (``--size``).
FAMILY = (
    Size("t", (96, 192, 384, 768), (3, 3, 9, 3), timm_name="convnext_tiny"),
    Size("s", (96, 192, 384, 768), (3, 3, 27, 3), timm_name="convnext_small"),
    Size("b", (128, 256, 512, 1024), (3, 3, 27, 3), timm_name="convnext_base"),
    Size("l", (192, 384, 768, 1536), (3, 3, 27, 3), timm_name="convnext_large"),
)  # fmt: skip

ROADMAP = (
    "resnet50",
    "stage_ratio",
    "patchify_stem",
    "depthwise_conv",
    "increase_width",
    "inverted_bottleneck",
    "move_up_dw",
    "kernel_7x7",
    "gelu",
    "fewer_activations",
    "fewer_norms",
    "layer_norm",
    "separate_downsampling",
)

CONVNEXT = register_roadmap(
    Roadmap(
        name="convnext",
        label="ConvNeXt",
        title="ResNet-50 -> ConvNeXt-T",
        citation="Liu, Mao, Wu, Feichtenhofer, Darrell, Xie: A ConvNet for the 2020s, "
        "CVPR 2022 (arXiv 2201.03545)",
        package=__name__,
        order=ROADMAP,
        accuracy=PaperColumn(
            "paper top-1 %", "%", "ImageNet-1K, 300 epochs, ConvNeXt's recipe, mean of 3 seeds"
        ),
        cost=PaperColumn("paper GFLOPs", "GFLOPs", "224x224, as the paper counts", True),
        # The weights --pretrained loads: torchvision's original ResNet-50 (the 76.1 % the paper
        # starts from; timm's default tag, a1_in1k, is another recipe's) and the official
        # ImageNet-1K ConvNeXt-T (timm's default tag is pre-trained on ImageNet-12k).
        references=(
            ("resnet50", "resnet50.tv_in1k"),
            ("separate_downsampling", "convnext_tiny.fb_in1k"),
        ),
        family=FAMILY,
    )
)

for _name in ROADMAP:
    importlib.import_module(f"{__name__}.{_name}")
