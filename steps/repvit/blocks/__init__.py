"""RepViT's roadmap's block kinds: MobileNetV3's ``inverted_residual``, the ``repvit`` block and
its ``downsample`` unit, each declared in a module of its own (fields, checks, diagram: no
torch, so a spec is checked at once) and built from :mod:`.layers` (torch, imported when a
block is first built)."""
