"""Data sources: the bundled digits split, image folders and their errors, loaders."""

import gzip
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from roadmap.errors import RoadmapError
from roadmap.train.data import ShardSampler, collate, load_datasets, make_loader
from roadmap.train.datasets import DEBIAN_FASHION, SyntheticImages, digits_arrays
from roadmap.train.recipe import load_recipe
from roadmap.train.sources import parse_source
from tests.helpers import CLASSES, corrupt_one_image, make_image_folder

QUICK = load_recipe("quick")


def test_parse_source() -> None:
    assert parse_source("digits").kind == "digits"
    assert parse_source("imagefolder:/data/pets").location == "/data/pets"
    assert parse_source("synthetic:64").slug == "synthetic-64"
    assert parse_source("synthetic").synthetic and not parse_source("digits").synthetic


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("imagenet", "unknown data source"),
        ("imagefolder", "needs a path"),
        ("synthetic:many", "number of images"),
        ("digits:/x", "takes nothing after the colon"),
    ],
)
def test_bad_sources(text: str, message: str) -> None:
    with pytest.raises(RoadmapError, match=message):
        parse_source(text)


def test_imagefolder_slugs_keep_same_named_folders_apart(tmp_path: Path) -> None:
    a = parse_source(f"imagefolder:{tmp_path}/a/pets").slug
    b = parse_source(f"imagefolder:{tmp_path}/b/pets").slug
    assert a.startswith("imagefolder-pets-") and a != b


def test_digits_split_is_fixed_disjoint_and_stratified() -> None:
    torch.manual_seed(123)  # the split must not follow the training seed
    data = load_datasets(parse_source("digits"), QUICK)
    train, val = data.train, data.val
    assert (len(train), len(val)) == (1437, 360)
    assert sorted(set(val.targets)) == list(range(10))
    again = load_datasets(parse_source("digits"), QUICK).val
    assert (again.images == val.images).all()
    train_rows = {im.tobytes() for im in train.images}
    assert sum(im.tobytes() in train_rows for im in val.images) < 5  # only duplicate drawings


def test_digits_are_scikit_learns_images_in_its_split() -> None:
    """What the sklearn-free reader and the kept split give is exactly what load_digits and
    train_test_split give: the same pixels, classes, and images in the same order."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    expected = (digits.images * (255 / 16)).round().astype(np.uint8)
    pixels, targets = digits_arrays()
    assert pixels.dtype == np.uint8 and (pixels == expected).all()
    assert (targets == digits.target).all()
    train, val = train_test_split(
        np.arange(len(targets)), test_size=0.2, stratify=targets, random_state=0
    )
    data = load_datasets(parse_source("digits"), QUICK)
    assert (data.train.images == expected[train]).all() and data.train.targets == list(
        digits.target[train]
    )
    assert (data.val.images == expected[val]).all() and data.val.targets == list(digits.target[val])


def test_digits_without_scikit_learns_file_is_one_clear_error(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    import importlib.machinery
    import importlib.util

    spec = importlib.machinery.ModuleSpec("sklearn", None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec)
    with pytest.raises(RoadmapError, match="digits are not where it keeps them"):
        digits_arrays()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RoadmapError, match="pip install scikit-learn"):
        digits_arrays()


def test_opening_the_digits_imports_no_scikit_learn() -> None:
    code = (
        "import sys; from roadmap.train.data import load_datasets; "
        "from roadmap.train.recipe import load_recipe; "
        "from roadmap.train.sources import parse_source; "
        "d = load_datasets(parse_source('digits'), load_recipe('quick')); "
        "print(len(d.train), 'sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1437", "False"], out.stderr


def test_digits_are_upscaled_to_three_channels() -> None:
    data = load_datasets(parse_source("digits"), QUICK.replace(img_size=48))
    image, label = data.val[0]
    assert image.shape == (3, 48, 48) and 0 <= label < 10
    assert data.num_classes == 10


def test_imagefolder_reads_classes_from_the_folders(tmp_path: Path) -> None:
    data = load_datasets(parse_source(f"imagefolder:{make_image_folder(tmp_path)}"), QUICK)
    assert data.num_classes == len(CLASSES)
    assert (len(data.train), len(data.val)) == (16, 8)
    assert data.train[0][0].shape == (3, 32, 32)


def test_imagefolder_errors_name_the_problem(tmp_path: Path) -> None:
    def load(path: Path) -> None:
        load_datasets(parse_source(f"imagefolder:{path}"), QUICK)

    with pytest.raises(RoadmapError, match="does not exist"):
        load(tmp_path / "nowhere")
    with pytest.raises(RoadmapError, match="train is missing"):
        load(tmp_path)
    (tmp_path / "train" / "cats").mkdir(parents=True)
    (tmp_path / "val").mkdir()
    with pytest.raises(RoadmapError, match="one class folder .*needs at least two"):
        load(tmp_path)  # top-1 over one class is always 100 %: nothing to learn
    (tmp_path / "train" / "dogs").mkdir()
    with pytest.raises(RoadmapError, match="cats has no images"):
        load(tmp_path)


def test_a_symlink_loop_is_named_instead_of_walked_forever(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path)
    (first, second) = sorted(p for p in (root / "train").iterdir())[:2]
    (first / "up").symlink_to("..")  # the loop `ln -s .. train/a/up` makes
    with pytest.raises(RoadmapError, match=r"symlink loop: .*/up/.* leads back to"):
        load_datasets(parse_source(f"imagefolder:{root}"), QUICK)
    (first / "up").unlink()
    (first / "x").symlink_to(second)  # two folders that lead into each other
    (second / "y").symlink_to(first)
    with pytest.raises(RoadmapError, match="symlink loop"):
        load_datasets(parse_source(f"imagefolder:{root}"), QUICK)


def test_an_undecodable_image_is_named_or_skipped(tmp_path: Path) -> None:
    """Found when the folder opens, whether or not an epoch would load it (a training epoch
    drops a random partial batch): named (error) or left out and listed (skip)."""
    root = make_image_folder(tmp_path)
    bad = corrupt_one_image(root)
    source = parse_source(f"imagefolder:{root}")
    with pytest.raises(RoadmapError, match=f"cannot decode image {bad}"):
        load_datasets(source, QUICK)
    lenient = load_datasets(source, QUICK, bad_images="skip")
    assert str(bad) not in [path for path, _ in lenient.train.samples]
    assert len(lenient.left_out) == 1 and str(bad) in lenient.left_out[0]
    assert len(lenient.train) == len(lenient.train.targets) == 2 * 8 - 1


def test_an_image_that_fails_only_while_decoding_is_skipped_and_counted(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path)
    truncated = root / "train" / CLASSES[1] / "0.png"
    truncated.write_bytes(truncated.read_bytes()[:80])  # the header reads, the pixels do not
    lenient = load_datasets(parse_source(f"imagefolder:{root}"), QUICK, bad_images="skip")
    assert lenient.left_out == []
    images, targets, skipped = collate([lenient.train[i] for i in range(len(lenient.train))])
    assert skipped == 1 and len(images) == len(targets) == len(lenient.train) - 1


def test_a_decompression_bomb_is_a_bad_image(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """An image whose size marks it as a decompression bomb (PIL refuses over twice its pixel
    limit) is named like any bad image, not a traceback."""
    root = make_image_folder(tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400)  # our 32x32 images are 1,024 pixels
    with pytest.raises(RoadmapError, match="cannot decode image .*decompression bomb"):
        load_datasets(parse_source(f"imagefolder:{root}"), QUICK)


def test_cifar_never_downloads_unless_asked(tmp_path: Path) -> None:
    with pytest.raises(RoadmapError, match="pass --download"):
        load_datasets(parse_source(f"cifar10:{tmp_path}"), QUICK)
    assert list(tmp_path.iterdir()) == []


def test_synthetic_is_cheap_and_imagenet_shaped() -> None:
    data = load_datasets(parse_source("synthetic:40"), QUICK)
    assert (len(data.train), len(data.val), data.num_classes) == (40, 10, 1000)
    image, label = data.train[39]
    assert image.shape == (3, 32, 32) and label == 39


def test_shard_sampler_covers_every_image_once() -> None:
    shards = [list(ShardSampler(10, rank, 3)) for rank in range(3)]
    assert sorted(i for shard in shards for i in shard) == list(range(10))


def test_training_loader_drops_the_partial_batch_and_evaluation_keeps_all() -> None:
    data = SyntheticImages(10, 32)
    train = [len(x) for x, _, _ in make_loader(data, 4, train=True, workers=0)]
    val = [len(x) for x, _, _ in make_loader(data, 4, train=False, workers=0)]
    assert train == [4, 4] and val == [4, 4, 2]


def test_randaugment_posterize_survives_zero_bits() -> None:
    """Pillow 13 rejects posterize(0 bits), which timm's 'inc1' policy asks for at full
    magnitude; the paper recipe must still run (the image goes black, as it used to)."""
    from timm.data.auto_augment import RandAugment

    from roadmap.train.data import train_transform

    transform = train_transform(load_recipe("paper").replace(img_size=32))
    (augment,) = [t for t in transform.transforms if isinstance(t, RandAugment)]
    (op,) = [op for op in augment.ops if op.name == "PosterizeIncreasing"]
    black = op.aug_fn(Image.new("RGB", (8, 8), (200, 100, 50)), 0)
    assert black.getextrema() == ((0, 0), (0, 0), (0, 0))
    augment.ops, augment.num_layers = [op], 1
    op.prob, op.magnitude, op.magnitude_std = 1.0, 10, 0  # the magnitude that asks for 0 bits
    assert transform(Image.new("RGB", (8, 8), (200, 100, 50))).shape == (3, 32, 32)


def test_loader_workers_survive_ctrl_c() -> None:
    """A terminal's Ctrl-C reaches the workers too; they must keep serving the epoch that the
    training process finishes before it stops."""
    import os
    import signal

    batches = iter(make_loader(SyntheticImages(12, 32), 4, train=False, workers=1))
    next(batches)
    for worker in batches._workers:  # the DataLoader's worker processes
        os.kill(worker.pid, signal.SIGINT)
    assert [len(x) for x, _, _ in batches] == [4, 4]


# --- Fashion-MNIST: tiny IDX files written here (no package, no download) --------------------


def write_idx(folder: Path, images: np.ndarray, labels: np.ndarray, prefix: str, gz: bool) -> None:
    """The IDX format Fashion-MNIST ships in: a magic number, the sizes, then raw bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    image_bytes = struct.pack(">IIII", 0x0803, n, h, w) + images.astype(np.uint8).tobytes()
    label_bytes = struct.pack(">II", 0x0801, n) + labels.astype(np.uint8).tobytes()
    for name, data in ((f"{prefix}-images-idx3-ubyte", image_bytes),
                       (f"{prefix}-labels-idx1-ubyte", label_bytes)):  # fmt: skip
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)


def tiny_fashion(folder: Path, gz: bool = True, per_class: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for prefix, count in (("train", per_class), ("t10k", 2)):
        labels = np.repeat(np.arange(10), count)
        images = labels[:, None, None] * 25 + rng.integers(0, 20, (len(labels), 28, 28))
        write_idx(folder, images, labels, prefix, gz)
    return folder


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "plain"])
def test_fashion_mnist_reads_idx_files_from_a_folder(tmp_path: Path, gz: bool) -> None:
    folder = tiny_fashion(tmp_path / "fm", gz=gz)
    data = load_datasets(parse_source(f"fashion_mnist:{folder}"), QUICK.replace(img_size=32))
    assert (len(data.train), len(data.val), data.num_classes) == (60, 20, 10)
    image, label = data.train[13]
    assert image.shape == (3, 32, 32) and label == 2
    assert data.source.slug == "fashion_mnist"  # where the files are is not what the data is


def test_fashion_mnist_in_torchvisions_layout(tmp_path: Path) -> None:
    tiny_fashion(tmp_path / "root" / "FashionMNIST" / "raw", gz=False)
    data = load_datasets(parse_source(f"fashion_mnist:{tmp_path / 'root'}"), QUICK)
    assert len(data.train) == 60


def test_fashion_mnist_missing_says_the_three_ways(tmp_path: Path) -> None:
    with pytest.raises(RoadmapError, match="apt-get install dataset-fashion-mnist.*--download"):
        load_datasets(parse_source(f"fashion_mnist:{tmp_path}"), QUICK)


def test_fashion_mnist_downloads_only_with_download(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """--download goes through torchvision's own FashionMNIST downloader (stubbed here)."""
    import torchvision.datasets

    calls = []

    class Downloader:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, download))
            tiny_fashion(Path(root) / "FashionMNIST" / "raw", gz=False)

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", Downloader)
    source = parse_source(f"fashion_mnist:{tmp_path / 'cache'}")
    with pytest.raises(RoadmapError):
        load_datasets(source, QUICK)
    assert calls == []
    data = load_datasets(source, QUICK, download=True)
    assert calls == [(str(tmp_path / "cache"), True)] and len(data.val) == 20


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist_from_debians_package() -> None:
    data = load_datasets(parse_source("fashion_mnist"), QUICK)
    assert (len(data.train), len(data.val)) == (60_000, 10_000)
    assert np.bincount(data.val.targets).tolist() == [1000] * 10


def test_a_train_subset_is_stratified_fixed_and_the_same_for_every_seed(tmp_path: Path) -> None:
    folder = tiny_fashion(tmp_path / "fm", per_class=10)
    recipe = QUICK.replace(train_subset=30)
    a = load_datasets(parse_source(f"fashion_mnist:{folder}"), recipe)
    torch.manual_seed(99)  # a training seed must not move the subset
    b = load_datasets(parse_source(f"fashion_mnist:{folder}"), recipe)
    assert a.train.indices == b.train.indices and len(a.train) == 30
    classes = [a.train.dataset.targets[i] for i in a.train.indices]
    assert np.bincount(classes).tolist() == [3] * 10
