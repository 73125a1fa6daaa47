"""The built-in data sources' openers: each reads one kind of ``--data`` into its two splits
(:class:`~roadmap.train.sources.Datasets`); :mod:`roadmap.train.sources` registers them.

- ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes). It
  ships inside scikit-learn, so it needs no download. The train/val split is fixed (stratified,
  20 % held out, its own seed), whatever the training seed; images are upscaled to the
  recipe's ``img_size`` and repeated to 3 channels.
- ``fashion_mnist[:PATH]``: Fashion-MNIST's 60,000 / 10,000 split, from Debian's package, a
  folder, or a download the user allowed.
- ``imagefolder:PATH``: ``PATH/train/<class>/*.jpg`` and ``PATH/val/<class>/*.jpg``; the classes
  come from the folder names; every image's header is checked when the folder is opened.
- ``cifar10`` / ``cifar100`` (optionally ``cifar10:ROOT``): through torchvision; downloaded only
  when the caller passes ``download=True`` (the CLI's ``--download``).
- ``synthetic`` (optionally ``synthetic:N`` training images): random tensors with 1,000
  classes, for throughput only. Every record made from it says ``"synthetic": true``.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from roadmap.errors import RoadmapError
from roadmap.train.sources import Datasets, DataSource, OpenRequest

# The digits' held-out split never moves with the training seed: scikit-learn's
# train_test_split(test_size=0.2, stratify=target, random_state=0), computed once and kept in
# digits_split.json (train indices, then validation indices, in the order it returns them), so
# that opening the digits imports no scikit-learn; tests/train/test_data.py compares the two.
DIGITS_SPLIT = Path(__file__).with_name("digits_split.json")
SYNTHETIC_CLASSES = 1000  # an ImageNet-shaped head, so params and MACs match the paper's nets
SYNTHETIC_TRAIN_DEFAULT = 2048
DEFAULT_DATA_ROOT = Path("~/.cache/roadmap/data")


def open_digits(request: OpenRequest) -> Datasets:
    return _digits(request.train_transform, request.eval_transform, request.source)


def open_fashion_mnist(request: OpenRequest) -> Datasets:
    r = request
    return _fashion_mnist(r.source, r.train_transform, r.eval_transform, r.download)


def open_image_folder(request: OpenRequest) -> Datasets:
    r = request
    return _image_folder(r.source, r.train_transform, r.eval_transform, r.bad_images)


def open_cifar(request: OpenRequest) -> Datasets:
    r = request
    return _cifar(r.source, r.train_transform, r.eval_transform, r.download)


def open_synthetic(request: OpenRequest) -> Datasets:
    size = int(request.source.location or SYNTHETIC_TRAIN_DEFAULT)
    train = SyntheticImages(size, request.img_size, seed=0)
    val = SyntheticImages(max(size // 4, 1), request.img_size, seed=1)
    return Datasets(train, val, SYNTHETIC_CLASSES, request.source)


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
    pixels, targets = digits_arrays()
    split = json.loads(DIGITS_SPLIT.read_text())
    train, val = np.asarray(split["train"]), np.asarray(split["val"])
    return Datasets(
        GrayImages(pixels[train], targets[train].tolist(), train_tf),
        GrayImages(pixels[val], targets[val].tolist(), eval_tf),
        10,
        source,
    )


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 digits as (N, 8, 8) uint8 pixels (0..16 scaled to 0..255) and their classes.

    Read from the file scikit-learn ships (``sklearn/datasets/data/digits.csv.gz``, what its
    ``load_digits`` reads) without importing scikit-learn, whose import takes about 2 s of CPU
    here: every ``roadmap train --data digits`` process paid it. The tests compare it with
    ``load_digits``.
    """
    spec = importlib.util.find_spec("sklearn")  # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise RoadmapError("the digits come with scikit-learn: pip install scikit-learn")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file():
        raise RoadmapError(f"scikit-learn's digits are not where it keeps them ({path})")
    with gzip.open(path, "rt") as f:
        data = np.loadtxt(f, delimiter=",")
    targets = data[:, -1].astype(int)
    pixels = (data[:, :-1].reshape(-1, 8, 8) * (255 / 16)).round().astype(np.uint8)
    return pixels, targets


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

    @property
    def targets(self) -> list[int]:
        """Every sample's class (they cycle), as ImageFolder's ``targets`` are."""
        return [i % SYNTHETIC_CLASSES for i in range(self.length)]


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
