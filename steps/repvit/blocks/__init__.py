"""RepViT's roadmap's block kinds: MobileNetV3's ``inverted_residual``, the ``repvit`` block and
its ``downsample`` unit, one module each (imported when a spec first uses one: they import
torch)."""
