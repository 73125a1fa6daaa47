"""ConvNeXt's roadmap's block kinds: ResNet-50's (``resnet_stem``, ``max_pool``, ``bottleneck``)
and ConvNeXt's (``patchify``, ``patch_merging``, ``convnext``), declared in :mod:`.resnet` and
:mod:`.convnext` (fields, checks, diagrams: no torch, so a spec is checked at once) and built
from :mod:`.layers` (torch, imported when a block is first built)."""
