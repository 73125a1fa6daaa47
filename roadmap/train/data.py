"""Data for training and evaluation: a source opened with the recipe's transforms, subsets,
and the loaders.

A source is named on the command line: :mod:`roadmap.train.sources` reads the name and
registers the kinds of source (``roadmap sources`` lists them); :mod:`roadmap.train.datasets`
opens the built-in ones.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import Any

import numpy as np
import torch
from PIL import Image
from timm.data import create_transform
from timm.data.auto_augment import RandAugment, posterize
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from torch.utils.data import default_collate as _default_collate

from roadmap.errors import RoadmapError
from roadmap.train.interrupt import ignore_in_workers
from roadmap.train.recipe import SUBSET_SEED, Recipe
from roadmap.train.sources import Datasets, DataSource, OpenRequest

BAD_IMAGE_POLICIES = ("error", "skip")


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
    request = OpenRequest(
        source,
        train_transform(recipe),
        eval_transform(recipe),
        recipe.img_size,
        download,
        bad_images,
    )
    data = source.about.open(request)
    if recipe.train_subset is not None and recipe.train_subset < data.num_classes:
        raise RoadmapError(
            f"key 'train_subset' ({recipe.train_subset}) must be at least the number of classes "
            f"of {source.kind} ({data.num_classes}): a stratified subset holds every class"
        )
    if recipe.train_subset is not None and recipe.train_subset < len(data.train):
        data.train = stratified_subset(data.train, recipe.train_subset)
    return data


def stratified_subset(dataset: Dataset, size: int) -> Subset:
    """``size`` images with the class proportions of ``dataset``, drawn with ``SUBSET_SEED``
    (the same images for every network and every training seed)."""
    from sklearn.model_selection import train_test_split

    targets = np.asarray(dataset_targets(dataset))
    keep, _ = train_test_split(
        np.arange(len(targets)), train_size=size, stratify=targets, random_state=SUBSET_SEED
    )
    return Subset(dataset, sorted(keep.tolist()))


def calibration_split(data: Datasets, recipe: Recipe, size: int, seed: int = 0) -> Dataset:
    """``size`` training images seen through the evaluation transform: what post-training
    quantization calibrates its activation ranges on (never the split it is scored on).

    The images are a seeded random draw from the training split (after any ``train_subset``),
    the same for every network. Augmentation would widen the ranges with crops and flips the
    deployed network never sees, so the evaluation transform is used.
    """
    base, indices = data.train, list(range(len(data.train)))
    if isinstance(base, Subset):
        base, indices = base.dataset, list(base.indices)
    view = copy.copy(base)  # the same images, another transform; the split itself is untouched
    if hasattr(view, "transform"):
        view.transform = eval_transform(recipe)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(indices), generator=generator)[: min(size, len(indices))]
    return Subset(view, [indices[i] for i in order.tolist()])


def dataset_targets(dataset: Dataset) -> list[int]:
    """Every sample's class, without loading an image."""
    return list(dataset.targets)


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
    The workers are stopped when the iteration ends, however it ends (:func:`stop_workers`).
    """
    iterator = iter(loader)
    try:
        yield from iterator
    except RoadmapError as exc:
        lines = str(exc).strip().splitlines()
        if len(lines) == 1:
            raise
        raise RoadmapError(lines[-1].split(": ", 1)[-1]) from None
    finally:
        stop_workers(iterator)


def stop_workers(iterator: Any) -> None:
    """Shut a loader's worker processes down now rather than in the garbage collector.

    A scheduler's SIGTERM goes to the whole process group, so the workers may already be dead
    when training abandons its epoch; torch's shutdown then reports "worker killed by signal",
    which from a destructor prints as a traceback. Here it is expected, and dropped. (Shutting
    down twice is a no-op, and a loader without workers has nothing to shut down.)
    """
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:
        with suppress(RuntimeError):
            shutdown()


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
    if source.about.in_memory:
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
