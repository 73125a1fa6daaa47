"""Which data: the kinds of data source ``--data`` may name, and a ``--data`` value read and
checked without loading anything (so a typo is reported at once, before torch is imported).

A :class:`DataKind` is everything the tool knows about a kind of source: its name, what may
follow the colon (a path, a count), how it opens (a function that returns the two splits:
:class:`Datasets`), whether it lives in memory, and the folder name its runs are filed under.
The built-in kinds are registered here and open in :mod:`roadmap.train.datasets`; a plugin (a
``--plugin`` file or an installed package's ``roadmap.data_sources`` entry point) registers its
own with :func:`register_data_kind`, and ``--data``, its help, ``roadmap sources``, training
and the results store find it the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roadmap.errors import RoadmapError
from roadmap.util.registry import Registry, shown

if TYPE_CHECKING:  # the types of what an opener returns; nothing here loads torch
    from torch.utils.data import Dataset

ENTRY_POINTS = "roadmap.data_sources"  # an installed package's kinds: name = module


@dataclass(frozen=True)
class DataSource:
    """A parsed ``--data`` value.

    Attributes:
        kind: the name of a registered :class:`DataKind`.
        location: the path (imagefolder, a CIFAR root) or size (synthetic) after the colon.
    """

    kind: str
    location: str | None = None

    @property
    def about(self) -> DataKind:
        """The kind of this source."""
        return get_data_kind(self.kind)

    @property
    def synthetic(self) -> bool:
        """Whether the images are random tensors (throughput only, no accuracy meaning)."""
        return self.about.synthetic

    @property
    def slug(self) -> str:
        """The folder name of this source in the results store."""
        kind = self.about
        return kind.slug(self) if kind.slug else self.kind


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


@dataclass(frozen=True)
class OpenRequest:
    """What an opener is given.

    Attributes:
        source: the parsed ``--data``.
        train_transform: PIL image -> tensor, the recipe's training augmentation.
        eval_transform: PIL image -> tensor, the recipe's evaluation resize and crop.
        img_size: the recipe's resolution (for sources that make tensors themselves).
        download: whether the user allowed a download (``--download``).
        bad_images: ``error`` or ``skip`` an undecodable image.
    """

    source: DataSource
    train_transform: Callable[[Any], Any]
    eval_transform: Callable[[Any], Any]
    img_size: int
    download: bool = False
    bad_images: str = "error"


@dataclass(frozen=True)
class DataKind:
    """A kind of data source.

    Attributes:
        name: what ``--data`` starts with.
        title: a few words for help and ``roadmap sources``.
        opener: ``OpenRequest -> Datasets``, or its ``"module:function"`` (imported on use).
        location: what may follow the colon, for help (``PATH``, ``N``); "" for nothing.
        required: whether the location must be given.
        check: ``location -> problem`` ("" when fine), checked as ``--data`` is read.
        in_memory: the images are in memory: the loader needs no worker processes.
        synthetic: random tensors: speed only, an accuracy means nothing.
        slug: ``source -> folder name`` in the results store; None: the kind's name (for a
            source whose location is where its files are, not which data it is).
    """

    name: str
    title: str
    opener: Callable[[OpenRequest], Datasets] | str
    location: str = ""
    required: bool = False
    check: Callable[[str], str] = lambda location: ""
    in_memory: bool = False
    synthetic: bool = False
    slug: Callable[[DataSource], str] | None = None

    def usage(self) -> str:
        """``imagefolder:PATH``, ``fashion_mnist[:PATH]``, ``digits``."""
        if not self.location:
            return self.name
        return f"{self.name}:{self.location}" if self.required else f"{self.name}[:{self.location}]"

    def open(self, request: OpenRequest) -> Datasets:
        """Open both splits."""
        opener = self.opener
        if isinstance(opener, str):
            import importlib

            module, _, function = opener.partition(":")
            opener = getattr(importlib.import_module(module), function)
        return opener(request)


def _load_installed() -> None:
    """The built-in kinds, then every installed package's ``roadmap.data_sources``."""
    from importlib.metadata import entry_points

    for kind in BUILT_IN:
        SOURCES.register(kind.name, kind, owner=__name__)
    for ep in entry_points(group=ENTRY_POINTS):
        SOURCES.declare(ep.name, ep.value)


SOURCES: Registry[DataKind] = Registry("data source", loader=_load_installed)


def register_data_kind(kind: DataKind) -> DataKind:
    """Make a kind of data source known by its name (which must be new); returns it."""
    owner = kind.opener if isinstance(kind.opener, str) else kind.opener.__module__
    return SOURCES.register(kind.name, kind, owner=owner.partition(":")[0])


def get_data_kind(name: str) -> DataKind:
    """The kind called ``name``; an unknown name raises and lists the known ones."""
    return SOURCES.get(name)


def data_kinds() -> list[DataKind]:
    """Every registered kind, the built-in ones first."""
    return SOURCES.values()


def parse_source(text: str) -> DataSource:
    """Read ``--data``.

    Raises:
        RoadmapError: an unknown kind, or a location the kind does not take.
    """
    name, colon, location = text.partition(":")
    if name not in SOURCES:
        usage = ", ".join(k.usage() for k in data_kinds())
        from roadmap.util.names import did_you_mean

        raise RoadmapError(
            f"unknown data source {shown(text)!r}{did_you_mean(name, SOURCES.names())}: use {usage}"
        )
    kind = get_data_kind(name)
    if kind.required and not location:
        raise RoadmapError(f"{name} needs a {kind.location.lower()}: --data {kind.usage()}")
    if colon and not kind.location:
        raise RoadmapError(f"{name} takes nothing after the colon ({kind.title}): --data {name}")
    problem = kind.check(location) if location else ""
    if problem:
        raise RoadmapError(f"--data {shown(text)}: {problem}")
    return DataSource(name, location or None)


def data_help() -> str:
    """``--data``'s help: every registered kind, as typed, with what it is."""
    kinds = " | ".join(f"{k.usage()} ({k.title})" for k in data_kinds())
    return f"{kinds}. `roadmap sources` lists them, plugins' too."


# --- the built-in kinds ------------------------------------------------------------------------


def _folder_slug(source: DataSource) -> str:
    """An image folder is the data: its name and a digest of where it is (two folders named
    alike stay apart)."""
    path = Path(source.location).expanduser().resolve()
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:6]
    return f"imagefolder-{path.name}-{digest}"


def _count(location: str) -> str:
    return "" if location.isdigit() else f"synthetic:N takes a number of images, got {location!r}"


_OPEN = "roadmap.train.datasets"
BUILT_IN = (
    DataKind("digits", "bundled, no download", f"{_OPEN}:open_digits", in_memory=True),
    DataKind(
        "fashion_mnist",
        "Debian's package, a folder, or --download",
        f"{_OPEN}:open_fashion_mnist",
        location="PATH",
        in_memory=True,
    ),
    DataKind(
        "imagefolder",
        "PATH/train and PATH/val, a folder per class",
        f"{_OPEN}:open_image_folder",
        location="PATH",
        required=True,
        slug=_folder_slug,
    ),
    DataKind("cifar10", "torchvision's, --download or a root", f"{_OPEN}:open_cifar", "ROOT"),
    DataKind("cifar100", "torchvision's, --download or a root", f"{_OPEN}:open_cifar", "ROOT"),
    DataKind(
        "synthetic",
        "random tensors, throughput only",
        f"{_OPEN}:open_synthetic",
        location="N",
        check=_count,
        in_memory=True,
        synthetic=True,
        slug=lambda s: f"synthetic-{s.location}" if s.location else "synthetic",
    ),
)
