"""A tiny on-disk image dataset for the training tests (made in a temporary folder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("dark", "light")  # told apart by brightness: learnable in a handful of steps


def make_image_folder(root: Path, per_class: int = 8, val_per_class: int = 4) -> Path:
    """Write ``root/train/<class>/*.png`` and ``root/val/<class>/*.png`` (32x32 RGB)."""
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("val", val_per_class)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                base = 60 + 130 * label  # dark ~60, light ~190
                pixels = rng.normal(base, 25, size=(32, 32, 3)).clip(0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def corrupt_one_image(root: Path) -> Path:
    """Overwrite one training image with bytes that are not an image; returns its path."""
    path = root / "train" / CLASSES[0] / "0.png"
    path.write_bytes(b"this is not a png")
    return path
