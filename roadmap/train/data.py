"""Data sources for training and evaluation, and their loaders.

A source is named on the command line (:mod:`roadmap.train.sources` reads the name):

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

import copy
import gzip
import os
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from timm.data import create_transform
from timm.data.auto_augment import RandAugment, posterize
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from torch.utils.data import default_collate as _default_collate
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from roadmap.errors import RoadmapError
from roadmap.train.interrupt import ignore_in_workers
from roadmap.train.recipe import SUBSET_SEED, Recipe
from roadmap.train.sources import DataSource

BAD_IMAGE_POLICIES = ("error", "skip")
DIGITS_SPLIT_SEED = 0  # the held-out split never moves with the training seed
DIGITS_VAL_FRACTION = 0.2
SYNTHETIC_CLASSES = 1000  # an ImageNet-shaped head, so params and MACs match the paper's nets
SYNTHETIC_TRAIN_DEFAULT = 2048
DEFAULT_DATA_ROOT = Path("~/.cache/roadmap/data")


@dataclass
class Datasets:
    """The two splits of a source, and what the model's head needs to know about them."""

    train: Dataset
    val: Dataset
    num_classes: int
    source: DataSource

    @property
    def left_out(self) -> list[str]:
        """Images left out when the splits were opened (``--bad-images skip``): path and why."""
        return [*getattr(self.train, "left_out", []), *getattr(self.val, "left_out", [])]


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
    data = _open(source, recipe, download, bad_images)
    if recipe.train_subset is not None and recipe.train_subset < len(data.train):
        data.train = stratified_subset(data.train, recipe.train_subset)
    return data


def _open(source: DataSource, recipe: Recipe, download: bool, bad_images: str) -> Datasets:
    train_tf, eval_tf = train_transform(recipe), eval_transform(recipe)
    if source.kind == "digits":
        return _digits(train_tf, eval_tf, source)
    if source.kind == "fashion_mnist":
        return _fashion_mnist(source, train_tf, eval_tf, download)
    if source.kind == "imagefolder":
        return _image_folder(source, train_tf, eval_tf, bad_images)
    if source.kind == "synthetic":
        size = int(source.location or SYNTHETIC_TRAIN_DEFAULT)
        train = SyntheticImages(size, recipe.img_size, seed=0)
        val = SyntheticImages(max(size // 4, 1), recipe.img_size, seed=1)
        return Datasets(train, val, SYNTHETIC_CLASSES, source)
    return _cifar(source, train_tf, eval_tf, download)


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
    if isinstance(dataset, SyntheticImages):
        return [i % SYNTHETIC_CLASSES for i in range(len(dataset))]
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


class GrayImages(Dataset):
    """Grayscale images held in memory (digits, Fashion-MNIST), served as 3-channel PIL images.

    Args:
        images: (N, H, W) uint8 pixels.
        targets: N class indices.
        transform: applied to each PIL image.
    """

    def __init__(self, images: np.ndarray, targets: list[int], transform: Callable) -> None:
        self.images, self.targets, self.transform = images, targets, transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        image = Image.fromarray(self.images[i], mode="L").convert("RGB")  # (H, W) -> (H, W, 3)
        return self.transform(image), self.targets[i]


def _digits(train_tf: Callable, eval_tf: Callable, source: DataSource) -> Datasets:
    """scikit-learn's handwritten digits on a fixed, stratified 80/20 split."""
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
    targets = digits.target
    return Datasets(
        GrayImages(pixels[train], targets[train].tolist(), train_tf),
        GrayImages(pixels[val], targets[val].tolist(), eval_tf),
        10,
        source,
    )


# --- Fashion-MNIST ----------------------------------------------------------------------------

FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),  # the standard test split
}
# Debian's package dataset-fashion-mnist installs the original gzipped files here.
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def _fashion_mnist(
    source: DataSource, train_tf: Callable, eval_tf: Callable, download: bool
) -> Datasets:
    """Fashion-MNIST's 60,000 / 10,000 split, read with torchvision's IDX readers."""
    folder = _find_fashion(source.location, download)
    (train_x, train_y), (val_x, val_y) = (_read_idx(folder, split) for split in ("train", "val"))
    return Datasets(
        GrayImages(train_x, train_y, train_tf), GrayImages(val_x, val_y, eval_tf), 10, source
    )


def _find_fashion(location: str | None, download: bool) -> Path:
    """The folder holding the four files: ``PATH``, its torchvision layout, Debian's, or the
    download cache; downloading (torchvision's FashionMNIST) only with ``--download``."""
    root = Path(location).expanduser() if location else DEFAULT_DATA_ROOT.expanduser()
    candidates = [root, root / "FashionMNIST" / "raw", root / "raw"]
    if location is None:
        candidates.insert(0, DEBIAN_FASHION)
    for folder in candidates:
        if all(_idx_path(folder, name) for pair in FASHION_FILES.values() for name in pair):
            return folder
    if download:
        from torchvision.datasets import FashionMNIST

        try:
            FashionMNIST(str(root), train=True, download=True)
        except Exception as e:  # no network, a full disk: say where it was trying to go
            raise RoadmapError(f"downloading Fashion-MNIST into {root} failed: {e}") from None
        return root / "FashionMNIST" / "raw"
    where = f"in {root}" if location else f"in {DEBIAN_FASHION} or {root}"
    raise RoadmapError(
        f"Fashion-MNIST is not {where}: install Debian's package (apt-get install "
        "dataset-fashion-mnist), pass --data fashion_mnist:PATH to a folder with the four "
        "IDX files, or add --download to fetch them"
    )


def _idx_path(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_idx(folder: Path, split: str) -> tuple[np.ndarray, list[int]]:
    """(images (N, 28, 28) uint8, labels) of one split; gzipped files are unpacked to a
    temporary folder first, since torchvision's readers take plain files."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    images_name, labels_name = FASHION_FILES[split]
    with tempfile.TemporaryDirectory(prefix="roadmap-idx-") as tmp:
        try:
            images = read_image_file(_plain(_idx_path(folder, images_name), tmp))
            labels = read_label_file(_plain(_idx_path(folder, labels_name), tmp))
        except (OSError, ValueError, RuntimeError, AssertionError) as e:
            message = f"cannot read Fashion-MNIST's {split} files in {folder}: {e}"
            raise RoadmapError(message) from None
    if len(images) != len(labels):
        raise RoadmapError(f"{folder}: {len(images)} {split} images but {len(labels)} labels")
    return images.numpy(), labels.tolist()


def _plain(path: Path, tmp: str) -> str:
    """The path of an uncompressed copy (the file itself when it is not gzipped)."""
    if path.suffix != ".gz":
        return str(path)
    target = Path(tmp) / path.stem
    with gzip.open(path, "rb") as compressed:
        target.write_bytes(compressed.read())
    return str(target)


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

    Every image's header is read when the folder is opened (about 25 us an image, on 8
    threads), so an image that is no image, or whose size marks it as a decompression bomb, is
    found whether or not an epoch happens to load it (training drops a random partial batch
    each epoch): it stops the run (``--bad-images error``), or is left out and listed
    (``skip``: :attr:`left_out`, counted in the record). One that only fails while decoding
    its data comes back as None from ``__getitem__``; :func:`collate` drops it and counts it.
    """

    def __init__(self, root: Path, transform: Callable, bad_images: str) -> None:
        super().__init__(str(root), transform=transform)
        self.bad_images = bad_images
        self.left_out = self._check_headers()

    def _check_headers(self) -> list[str]:
        with ThreadPoolExecutor(max_workers=HEADER_THREADS) as pool:
            problems = list(pool.map(_header_problem, [path for path, _ in self.samples]))
        bad = [(i, p) for i, p in enumerate(problems) if p is not None]
        if bad and self.bad_images != "skip":
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise RoadmapError(f"{bad[0][1]}{more}; remove it, or pass --bad-images skip")
        dropped = {i for i, _ in bad}
        self.samples = [s for i, s in enumerate(self.samples) if i not in dropped]
        self.imgs, self.targets = self.samples, [t for _, t in self.samples]
        return [p for _, p in bad]

    def __getitem__(self, i: int) -> tuple[Any, int] | None:
        path, target = self.samples[i]
        try:
            image = self.loader(path)
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
            if self.bad_images == "skip":
                return None
            raise RoadmapError(
                f"cannot decode image {path} ({exc}); remove it, or pass --bad-images skip"
            ) from None
        return self.transform(image), target


HEADER_THREADS = 8  # reading headers waits on the disk, not the CPU


def _header_problem(path: str) -> str | None:
    """Why an image cannot be decoded, told from its header alone (None when it can be)."""
    try:
        with Image.open(path) as image:
            image.size  # noqa: B018 (reading the size is the check)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        return f"cannot decode image {path} ({exc})"
    return None


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
    if source.kind in ("digits", "fashion_mnist", "synthetic"):
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
