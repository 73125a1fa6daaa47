"""Which data: a ``--data`` value read and checked, without loading anything (so a typo is
reported at once, before torch is imported). :mod:`roadmap.train.data` opens the source."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from roadmap.errors import RoadmapError
from roadmap.util.names import did_you_mean

KINDS = ("digits", "fashion_mnist", "imagefolder", "cifar10", "cifar100", "synthetic")


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
            f"unknown data source {text!r}{did_you_mean(kind, KINDS)}: use digits, "
            "fashion_mnist[:PATH], imagefolder:PATH, cifar10, cifar100 or synthetic"
        )
    if kind == "imagefolder" and not location:
        raise RoadmapError("imagefolder needs a path: --data imagefolder:PATH")
    if kind == "synthetic" and location and not location.isdigit():
        raise RoadmapError(f"synthetic:N takes a number of images, got {location!r}")
    if kind == "digits" and location:
        raise RoadmapError("digits takes no path: it is bundled with scikit-learn")
    return DataSource(kind, location or None)
