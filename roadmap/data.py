"""Data sources for training and evaluation, and their loaders.

A source is named on the command line:

- ``digits``: scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes). It
  ships inside scikit-learn, so it needs no download. The train/val split is fixed (stratified,
  20 % held out, its own seed), whatever the training seed; images are upscaled to the
  recipe's ``img_size`` and repeated to 3 channels.
- ``imagefolder:PATH``: ``PATH/train/<class>/*.jpg`` and ``PATH/val/<class>/*.jpg``; the classes
  come from the folder names.
- ``cifar10`` / ``cifar100`` (optionally ``cifar10:ROOT``): through torchvision; downloaded only
  when the caller passes ``download=True`` (the CLI's ``--download``).
- ``synthetic`` (optionally ``synthetic:N`` training images): random tensors with 1,000
  classes, for throughput only. Every record made from it says ``"synthetic": true``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from timm.data import create_transform
from timm.data.auto_augment import RandAugment, posterize
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data import default_collate as _default_collate
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from roadmap.errors import RoadmapError
from roadmap.interrupt import ignore_in_workers
from roadmap.recipe import Recipe

KINDS = ("digits", "imagefolder", "cifar10", "cifar100", "synthetic")
BAD_IMAGE_POLICIES = ("error", "skip")
DIGITS_SPLIT_SEED = 0  # the held-out split never moves with the training seed
DIGITS_VAL_FRACTION = 0.2
SYNTHETIC_CLASSES = 1000  # an ImageNet-shaped head, so params and MACs match the paper's nets
SYNTHETIC_TRAIN_DEFAULT = 2048
DEFAULT_DATA_ROOT = Path("~/.cache/roadmap/data")


@dataclass(frozen=True)
class DataSource:
    """A parsed ``--data`` value.

    Attributes:
        kind: one of ``KINDS``.
        location: the path (imagefolder, cifar root) or size (synthetic) after the colon, if any.
    """

    kind: str
    location: str | None = None

    @property
    def synthetic(self) -> bool:
        """Whether the images are random tensors (throughput only, no accuracy meaning)."""
        return self.kind == "synthetic"

    @property
    def slug(self) -> str:
        """The folder name of this source in the results store."""
        if self.kind == "synthetic" and self.location:
            return f"synthetic-{self.location}"
        if self.kind != "imagefolder":
            return self.kind  # a CIFAR root is where the files are, not which data it is
        path = Path(self.location).expanduser().resolve()
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:6]
        return f"imagefolder-{path.name}-{digest}"  # two folders named alike stay apart


def parse_source(text: str) -> DataSource:
    """Read ``--data``.

    Raises:
        RoadmapError: an unknown kind, or ``imagefolder`` without a path.
    """
    kind, _, location = text.partition(":")
    if kind not in KINDS:
        raise RoadmapError(
            f"unknown data source {text!r}: use digits, imagefolder:PATH, cifar10, cifar100 "
            "or synthetic"
        )
    if kind == "imagefolder" and not location:
        raise RoadmapError("imagefolder needs a path: --data imagefolder:PATH")
    if kind == "synthetic" and location and not location.isdigit():
        raise RoadmapError(f"synthetic:N takes a number of images, got {location!r}")
    if kind == "digits" and location:
        raise RoadmapError("digits takes no path: it is bundled with scikit-learn")
    return DataSource(kind, location or None)


@dataclass
class Datasets:
    """The two splits of a source, and what the model's head needs to know about them."""

    train: Dataset
    val: Dataset
    num_classes: int
    source: DataSource


def load_datasets(
    source: DataSource, recipe: Recipe, *, download: bool = False, bad_images: str = "error"
) -> Datasets:
    """Open both splits of a source with the recipe's transforms.

    Args:
        source: from :func:`parse_source`.
        recipe: gives the resolution, augmentation and evaluation crop.
        download: allow torchvision to fetch CIFAR (nothing else ever downloads).
        bad_images: ``error`` stops at an undecodable image, ``skip`` drops and counts it.

    Raises:
        RoadmapError: the data is missing, empty or malformed.
    """
    if bad_images not in BAD_IMAGE_POLICIES:
        raise RoadmapError(f"--bad-images must be one of {', '.join(BAD_IMAGE_POLICIES)}")
    train_tf, eval_tf = train_transform(recipe), eval_transform(recipe)
    if source.kind == "digits":
        train, val = DigitsDataset("train", train_tf), DigitsDataset("val", eval_tf)
        return Datasets(train, val, 10, source)
    if source.kind == "imagefolder":
        return _image_folder(source, train_tf, eval_tf, bad_images)
    if source.kind == "synthetic":
        size = int(source.location or SYNTHETIC_TRAIN_DEFAULT)
        train = SyntheticImages(size, recipe.img_size, seed=0)
        val = SyntheticImages(max(size // 4, 1), recipe.img_size, seed=1)
        return Datasets(train, val, SYNTHETIC_CLASSES, source)
    return _cifar(source, train_tf, eval_tf, download)


def train_transform(recipe: Recipe) -> Callable[[Image.Image], torch.Tensor]:
    """The recipe's training augmentation (timm's ImageNet-style pipeline)."""
    transform = create_transform(
        recipe.img_size,
        is_training=True,
        scale=recipe.scale,
        hflip=recipe.hflip,
        color_jitter=recipe.color_jitter,
        auto_augment=recipe.auto_augment,
        interpolation=recipe.interpolation,
        re_prob=recipe.random_erasing,
        re_mode="pixel",  # per-pixel noise, as DeiT and RepViT erase
    )
    for step in getattr(transform, "transforms", []):
        for op in getattr(step, "ops", []) if isinstance(step, RandAugment) else []:
            if op.name.startswith("Posterize"):
                op.aug_fn = _posterize
    return transform


def _posterize(image: Image.Image, bits_to_keep: int, **_: Any) -> Image.Image:
    """timm's posterize, also for 0 bits.

    RandAugment's ``inc1`` policy asks for 0 bits at full magnitude (which ``mstd`` noise
    reaches); Pillow up to 12 turned that into a black image, Pillow 13 raises ValueError.
    We keep the old, intended behaviour.
    """
    if bits_to_keep <= 0:
        return Image.new(image.mode, image.size)
    return posterize(image, bits_to_keep)


def eval_transform(recipe: Recipe) -> Callable[[Image.Image], torch.Tensor]:
    """Resize, centre crop and normalize, as evaluation always does."""
    return create_transform(
        recipe.img_size,
        is_training=False,
        crop_pct=recipe.crop_pct,
        interpolation=recipe.interpolation,
    )


class DigitsDataset(Dataset):
    """scikit-learn's handwritten digits as 3-channel PIL images, on a fixed split.

    Args:
        split: ``train`` or ``val``.
        transform: applied to each PIL image.
    """

    def __init__(self, split: str, transform: Callable[[Image.Image], Any]) -> None:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        pixels = (digits.images * (255 / 16)).round().astype(np.uint8)  # 0..16 -> 0..255
        train, val = train_test_split(
            np.arange(len(pixels)),
            test_size=DIGITS_VAL_FRACTION,
            stratify=digits.target,
            random_state=DIGITS_SPLIT_SEED,
        )
        index = {"train": train, "val": val}[split]
        self.images, self.targets = pixels[index], digits.target[index].tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        image = Image.fromarray(self.images[i], mode="L").convert("RGB")  # 8x8 -> 8x8x3
        return self.transform(image), self.targets[i]


class SyntheticImages(Dataset):
    """Random, already-normalized images with cycling labels: throughput only.

    A small pool of tensors is made once and reused, so producing a sample costs nothing.

    Args:
        length: number of samples.
        img_size: side of the square images.
        seed: seed of the pool.
        pool: number of distinct tensors.
    """

    def __init__(self, length: int, img_size: int, seed: int = 0, pool: int = 64) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.randn(min(pool, length), 3, img_size, img_size, generator=generator)
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i % len(self.images)], i % SYNTHETIC_CLASSES


class CheckedImageFolder(ImageFolder):
    """An ImageFolder that names the file it cannot decode, or skips it.

    A skipped sample comes back as None; :func:`collate` drops it and counts it.
    """

    def __init__(self, root: Path, transform: Callable, bad_images: str) -> None:
        super().__init__(str(root), transform=transform)
        self.bad_images = bad_images

    def __getitem__(self, i: int) -> tuple[Any, int] | None:
        path, target = self.samples[i]
        try:
            image = self.loader(path)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            if self.bad_images == "skip":
                return None
            raise RoadmapError(
                f"cannot decode image {path} ({exc}); remove it, or pass --bad-images skip"
            ) from None
        return self.transform(image), target


def _image_folder(source: DataSource, train_tf: Callable, eval_tf: Callable, bad: str) -> Datasets:
    root = Path(source.location).expanduser()
    if not root.is_dir():
        raise RoadmapError(f"data path {root} does not exist or is not a folder")
    for split in ("train", "val"):
        _check_split(root / split)
    train = CheckedImageFolder(root / "train", train_tf, bad)
    val = CheckedImageFolder(root / "val", eval_tf, bad)
    if val.classes != train.classes:
        raise RoadmapError(
            f"{root}/val has classes {val.classes[:5]}... but {root}/train has "
            f"{train.classes[:5]}...; both splits need the same class folders"
        )
    return Datasets(train, val, len(train.classes), source)


def _check_split(folder: Path) -> None:
    """One clear line for a split folder that is missing, has fewer than two classes, has a
    class without images, or has a symlink loop (torchvision would walk it forever)."""
    if not folder.is_dir():
        raise RoadmapError(f"{folder} is missing: imagefolder:PATH needs PATH/train and PATH/val")
    classes = sorted(entry.path for entry in os.scandir(folder) if entry.is_dir())
    if len(classes) < 2:
        found = "no class folders" if not classes else f"one class folder ({classes[0]})"
        raise RoadmapError(
            f"{folder} has {found}: classification needs at least two "
            f"(expected {folder}/<class>/<image>)"
        )
    for path in classes:
        if not _has_images(Path(path)):
            raise RoadmapError(f"class folder {path} has no images")


def _has_images(folder: Path) -> bool:
    """Whether ``folder`` holds an image anywhere below it, walking it the way torchvision
    will (following symlinks); a link that leads back into its own chain of folders raises
    instead of looping forever."""
    found = False
    chains = {str(folder): {folder.resolve()}}
    for here, dirs, names in os.walk(folder, followlinks=True):
        chain = chains.pop(here)
        for name in dirs:
            target = (Path(here) / name).resolve()
            if target in chain:
                raise RoadmapError(
                    f"symlink loop: {Path(here) / name} leads back to {target}; remove the "
                    "link (torchvision would walk it forever)"
                )
            chains[os.path.join(here, name)] = chain | {target}
        found = found or any(name.lower().endswith(IMG_EXTENSIONS) for name in names)
    return found


def _cifar(source: DataSource, train_tf: Callable, eval_tf: Callable, download: bool) -> Datasets:
    from torchvision.datasets import CIFAR10, CIFAR100

    dataset_class = {"cifar10": CIFAR10, "cifar100": CIFAR100}[source.kind]
    root = Path(source.location or DEFAULT_DATA_ROOT).expanduser()
    try:
        train = dataset_class(str(root), train=True, transform=train_tf, download=download)
        val = dataset_class(str(root), train=False, transform=eval_tf, download=download)
    except RuntimeError:
        raise RoadmapError(
            f"{source.kind} is not in {root}: pass --download to fetch it there, or "
            f"--data {source.kind}:PATH for a copy you already have"
        ) from None
    return Datasets(train, val, len(train.classes), source)


def collate(batch: list[Any]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Stack a batch, dropping samples that came back as None (skipped bad images).

    Returns:
        images, targets, and the number of samples dropped.
    """
    kept = [sample for sample in batch if sample is not None]
    if not kept:
        return torch.empty(0), torch.empty(0, dtype=torch.long), len(batch)
    images, targets = _default_collate(kept)
    return images, targets, len(batch) - len(kept)


def batches(loader: DataLoader) -> Iterator[Any]:
    """Iterate a loader; an error raised for the user inside a worker arrives as one line.

    (A DataLoader re-raises a worker's exception with the worker's traceback in its message.)
    """
    try:
        yield from loader
    except RoadmapError as exc:
        lines = str(exc).strip().splitlines()
        if len(lines) == 1:
            raise
        raise RoadmapError(lines[-1].split(": ", 1)[-1]) from None


class ShardSampler(Sampler[int]):
    """Every ``world``-th index starting at ``rank``, in order, without padding.

    Evaluation uses it so that the ranks together see each image exactly once.
    """

    def __init__(self, length: int, rank: int, world: int) -> None:
        self.indices = list(range(rank, length, world))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        return iter(self.indices)


def default_workers(source: DataSource) -> int:
    """Loader workers when the user gives none: in-memory sources load in the main process
    (worker processes would only compete with training for the cores)."""
    if source.kind in ("digits", "synthetic"):
        return 0
    return min(8, os.cpu_count() or 1)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    train: bool,
    workers: int,
    seed: int = 0,
    rank: int = 0,
    world: int = 1,
) -> DataLoader:
    """A loader for one process.

    Training shuffles (through a DistributedSampler when there are several processes, whose
    ``set_epoch`` the loop calls) and drops the last partial batch; evaluation keeps order and
    every sample. Workers are not persistent: they are re-seeded from the main process at
    every epoch, which is what makes a resumed run repeat an uninterrupted one. Workers ignore
    Ctrl-C, so that the training process can finish its epoch and stop them in order.
    """
    if train and world > 1:
        sampler = torch.utils.data.DistributedSampler(dataset, world, rank, shuffle=True, seed=seed)
    elif train:
        sampler = torch.utils.data.RandomSampler(dataset)
    else:
        sampler = ShardSampler(len(dataset), rank, world)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        worker_init_fn=ignore_in_workers,
        drop_last=train,
        pin_memory=torch.cuda.is_available(),
    )
