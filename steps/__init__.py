"""The roadmaps that ship with ``roadmap``, one package each: ``repvit`` (MobileNetV3-L ->
RepViT-M0.9) and ``convnext`` (ResNet-50 -> ConvNeXt-T).

Installed, this folder is the package ``roadmap_steps`` (a name of this distribution's own, so
no generic ``steps`` lands in site-packages). Each roadmap is found as any user's roadmap
package is: through the ``roadmap.steps`` entry point the project's ``pyproject.toml``
declares, and its block kinds through ``roadmap.block_kinds``. Nothing in the ``roadmap``
library names them.
"""
