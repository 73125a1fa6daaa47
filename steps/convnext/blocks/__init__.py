"""ConvNeXt's roadmap's block kinds: ResNet-50's (``resnet_stem``, ``max_pool``, ``bottleneck``)
and ConvNeXt's (``patchify``, ``patch_merging``, ``convnext``), imported when a spec first uses
one (they import torch)."""
