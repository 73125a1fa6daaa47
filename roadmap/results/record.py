"""What a finished training run records: one typed schema, one serialization.

``metrics.json`` in a run folder is :meth:`RunRecord.to_dict`; :meth:`RunRecord.from_dict`
reads it back (keys added by later versions are ignored, so an older ``roadmap`` still reads a
newer store). Nothing else assembles or parses a record.
"""

from __future__ import annotations

import dataclasses
import platform
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the record is plain data: reading one must not load torch
    import torch

from roadmap.errors import RoadmapError
from roadmap.util.typed import checked

RECORD_FORMAT = "roadmap-record/1"
FORMAT_PREFIX = "roadmap-record/"


@dataclass(frozen=True)
class LrRule:
    """How the peak learning rate was derived (``roadmap.train.recipe.lr_rule`` fills it in)."""

    rule: str
    base_lr: float
    global_batch: int
    per_process_batch: int
    processes: int
    peak_lr: float


@dataclass(frozen=True)
class Environment:
    """Where and how the run trained (everything that can change a throughput figure)."""

    python: str
    torch: str
    timm: str
    platform: str
    device: str
    processes: int
    threads: int
    workers: int
    amp: str | None
    channels_last: bool
    compile: bool
    fused_optimizer: bool | None = None  # torch's fused Adam(W) kernel; None: not recorded
    jobs: int | None = None  # runs training at once here (`roadmap run --jobs`); None: not recorded

    @classmethod
    def here(
        cls,
        device: torch.device,
        processes: int,
        workers: int,
        amp: torch.dtype | None,
        channels_last: bool,
        compile: bool,
        fused_optimizer: bool | None = None,
        jobs: int | None = None,
    ) -> Environment:
        """This process's environment, with the run's own settings."""
        import timm
        import torch

        return cls(
            python=platform.python_version(),
            torch=torch.__version__,
            timm=timm.__version__,
            platform=platform.platform(),
            device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            processes=processes,
            threads=torch.get_num_threads(),
            workers=workers,
            amp=str(amp).removeprefix("torch.") if amp else None,
            channels_last=channels_last,
            compile=compile,
            fused_optimizer=fused_optimizer,
            jobs=jobs,
        )


@dataclass(frozen=True)
class Int8Scores:
    """A checkpoint's int8 program scored beside its float32 deploy form, image by image
    (``roadmap eval --int8``, :mod:`roadmap.train.int8`); a record keeps them as ``int8``.

    Attributes:
        name: the network.
        spec_hash: its spec's hash (the record's, when stored in one).
        weights: "model" or "ema".
        images: test images scored.
        float_top1: top-1 % of the fused float32 network in torch.
        int8_top1: top-1 % of the int8 ExecuTorch program.
        lost: images the float32 form classifies right and the int8 program wrong.
        gained: images the int8 program classifies right and the float32 form wrong.
        agreement: % of images whose top-1 class is the same in both.
        sqnr_db: the int8 logits' signal-to-quantization-noise ratio over the test split.
        calibration_images: training images the activation ranges were calibrated on.
        quantization: how the program was quantized.
        runtime: what ran it.
        threads: the runtime's threads.
        measured_at: when (UTC).
    """

    name: str
    spec_hash: str
    weights: str
    images: int
    float_top1: float
    int8_top1: float
    lost: int
    gained: int
    agreement: float
    sqnr_db: float
    calibration_images: int
    quantization: str
    runtime: str
    threads: int
    measured_at: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RunRecord:
    """One finished run: what was trained, on what, how well, and under which conditions.

    Accuracies are percentages on the validation split after the last epoch (``top1``), of the
    fused deploy form (``fused_*``, which must agree: scored in the same pass), at the best
    epoch (``best_*``; each epoch scores the deploy form, which computes the same function;
    records written before that scored the training form) and of the weight average
    (``ema_*``, its deploy form; None without EMA). Counts are at ``img_size``. ``init``
    says where the starting weights came from (``--pretrained`` / ``--init``), what was loaded
    and what kept its fresh initialization.
    """

    data: str
    synthetic: bool
    recipe: str
    name: str
    seed: int
    steps: list[str]
    spec_hash: str
    recipe_hash: str
    num_classes: int
    top1: float
    top5: float
    best_top1: float
    best_top5: float
    best_epoch: int
    fused_top1: float
    fused_top5: float
    fused_disagreements: int
    val_images: int
    params: int
    macs: int | None
    deploy_params: int
    deploy_macs: int
    img_size: int
    epochs: int
    train_time_s: float
    images_per_s: float
    skipped_images: int
    lr: LrRule
    environment: Environment
    command: str
    finished_at: str
    ema_top1: float | None = None
    ema_top5: float | None = None
    best_ema_top1: float | None = None
    best_ema_top5: float | None = None
    init: dict[str, Any] | None = None  # starting weights, when not a fresh init
    train_images: int | None = None  # the training split's size (after a train_subset)
    contention: dict[str, Any] | None = None  # how busy other work kept the machine
    skipped_files: list[str] | None = None  # images left out (--bad-images skip): path, why
    distillation: dict[str, Any] | None = None  # type, alpha, tau, teacher and its weights
    int8: Int8Scores | None = None  # added by `roadmap eval --int8` (train/int8.py)
    format: str = RECORD_FORMAT

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (the content of ``metrics.json``)."""
        return dataclasses.asdict(self)

    def get(self, metric: str) -> Any:
        """A field by name (``top1``, ``best_top1``, ...), None if the record has none."""
        return getattr(self, metric, None)

    @classmethod
    def from_dict(cls, data: Any) -> RunRecord:
        """Read a record back; every field is type-checked (``"top1": "abc"`` is an error).

        Raises:
            RoadmapError: not a JSON object, a missing or wrong-typed field (named), or a
                format newer than this version reads.
        """
        if not isinstance(data, dict):
            raise RoadmapError(f"not a run record: a JSON {type(data).__name__}, not an object")
        _check_format(data.get("format", RECORD_FORMAT))
        record = _typed(cls, data, "")
        _check_percentages(record)
        return record


# The accuracies a record holds, each a percentage of validation images.
PERCENTAGES = (
    "top1", "top5", "best_top1", "best_top5", "fused_top1", "fused_top5",
    "ema_top1", "ema_top5", "best_ema_top1", "best_ema_top5",
)  # fmt: skip


def _check_percentages(record: RunRecord) -> None:
    """A record is a claim: a top-1 of 500 % or -5 % is not one any run made."""
    values = {name: record.get(name) for name in PERCENTAGES}
    if record.int8 is not None:
        values |= {"int8.float_top1": record.int8.float_top1}
        values |= {"int8.int8_top1": record.int8.int8_top1}
    for name, value in values.items():
        if value is not None and not 0.0 <= value <= 100.0:
            raise RoadmapError(f"{name}: {value!r} is not a percentage (0 to 100)")


def _check_format(text: Any) -> None:
    version = str(text).removeprefix(FORMAT_PREFIX)
    if not (str(text).startswith(FORMAT_PREFIX) and version.isdigit()):
        raise RoadmapError(f"format: {text!r} is not a roadmap run record's format")
    if int(version) > int(RECORD_FORMAT.removeprefix(FORMAT_PREFIX)):
        raise RoadmapError(
            f"format: written by a newer roadmap ({text}; this version reads {RECORD_FORMAT}): "
            "upgrade roadmap to read it"
        )


_NESTED = {"lr": LrRule, "environment": Environment, "int8": Int8Scores}


def _typed(cls: type, data: Any, where: str) -> Any:
    """``cls`` from plain data, each field checked against its annotation (keys added by later
    versions are ignored; a missing required field is an error that names it)."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise RoadmapError(f"{where.rstrip('.')}: must be a mapping, got {data!r}")
    values = {}
    for f in fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING:
                raise RoadmapError(f"{where}{f.name}: missing (not a complete run record)")
            continue
        value = data[f.name]
        if f.name in _NESTED and cls is RunRecord:
            optional = value is None and f.default is None  # int8: None until eval --int8
            values[f.name] = None if optional else _typed(_NESTED[f.name], value, f"{f.name}.")
        else:
            values[f.name] = checked(value, str(f.type), f"{where}{f.name}")
    return cls(**values)
