"""RepVGG's roadmap: a plain VGG-style network, then a 1x1 branch, then an identity branch.

Ding, Zhang, Ma, Han, Ding, Sun: "RepVGG: Making VGG-style ConvNets Great Again", CVPR 2021
(arXiv 2101.03697). Its Table 6 trains RepVGG-B0 three ways beside the full block, for 120
epochs each, to show what each training-time branch is worth; after re-parameterization all of
them are the same plain network. This package walks that ablation as a roadmap, on RepVGG-A0's
widths and depths, so that its end is timm's ``repvgg_a0`` exactly.

Importing the package registers the roadmap and its steps, and declares its block kind
(``repvgg``, in ``block.py``), which is imported only when a spec uses it; the kind's module
is in ``layers.py``, imported only when a block is built: it imports torch, and naming a step
or checking a spec should not wait for torch to load.
"""

from roadmap import PaperColumn, Roadmap, declare_block_kind, register_roadmap

STEPS = ("vgg_a0", "branch_1x1", "branch_identity")

REPVGG = register_roadmap(
    Roadmap(
        name="repvgg",
        title="plain VGG-style A0 -> RepVGG-A0 (training-time branches)",
        citation="Ding, Zhang, Ma, Han, Ding, Sun: RepVGG: Making VGG-style ConvNets Great "
        "Again, CVPR 2021 (arXiv 2101.03697)",
        package=__name__,
        order=STEPS,
        accuracy=PaperColumn(
            "paper top-1 %",
            "%",
            "ImageNet-1K, RepVGG-B0 (not A0), 120 epochs, the paper's Table 6",
        ),
        references=(("branch_identity", "repvgg_a0.rvgg_in1k"),),
    )
)

declare_block_kind("repvgg", f"{__name__}.block")

from repvgg_roadmap import branch_1x1, branch_identity, vgg_a0  # noqa: E402, F401
