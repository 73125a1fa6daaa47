"""Visformer's transition (Chen et al., ICCV 2021): DeiT-S to Visformer-S, one step a module.

The genre's other half: a transformer walked, one change at a time, into a convolutional
network, then the network the paper built from what the walk showed. Importing this package
registers the roadmap (``visformer``) and its steps in the paper's order: the transition's
networks (the official code's ``net1`` ... ``net7``), then Visformer-S. The paper trains each
network under two recipes, a weak one ("base") and DeiT's strong one ("elite"), reporting
top-1 under both; its headline is that the convolution-friendly side's advantage grows as the
recipe weakens and the data shrink (``roadmap recipes``: ``visformer-base``,
``visformer-elite``).

The paper's per-step numbers could not be read on the machine this roadmap was written on, so
its columns are empty: no number is quoted from memory.
"""

import importlib

from roadmap.arch import blocks
from roadmap.arch.roadmaps import PaperColumn, Roadmap, register_roadmap

for _kind in ("patch_embed", "class_token", "position_embedding", "transformer"):
    blocks.declare_block_kind(_kind, f"{__name__}.blocks.transformer")

ROADMAP = (
    "deit_s",
    "global_pool",
    "stepwise_embedding",
    "stage_wise",
    "batch_norm",
    "conv_ffn",
    "no_position_embedding",
    "no_attention",
    "visformer_s",
)

VISFORMER = register_roadmap(
    Roadmap(
        name="visformer",
        label="Visformer",
        title="DeiT-S -> Visformer-S",
        citation="Chen, Xie, Niu, Liu, Wei, Tian: Visformer: The Vision-friendly Transformer, "
        "ICCV 2021 (arXiv 2104.12533)",
        package=__name__,
        order=ROADMAP,
        accuracy=PaperColumn("paper top-1 % (elite)", "%", "ImageNet-1K, the elite setting"),
        cost=PaperColumn("paper GFLOPs", "GFLOPs", "224x224, as the paper counts", True),
        # The weights --pretrained loads: DeiT-S's (timm's deit_small_patch16_224.fb_in1k) and
        # Visformer-S's (visformer_small.in1k).
        references=(
            ("deit_s", "deit_small_patch16_224"),
            ("visformer_s", "visformer_small"),
        ),
    )
)

for _name in ROADMAP:
    importlib.import_module(f"{__name__}.{_name}")
