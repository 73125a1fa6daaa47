"""int8 accuracy: a trained checkpoint's ExecuTorch int8 program against its float32 form.

Phones run these networks quantized, and re-parameterized convolutions are known to suffer
from post-training quantization (a fused kernel's weights spread wider than any branch's). The
question ``roadmap eval --int8`` answers per step: how many test images does the int8 program
get wrong that the float32 deploy form got right, and the other way round?

1. The checkpoint's network is fused (its deploy form, in float32: the reference).
2. It is quantized after training through PT2E with ExecuTorch's XNNPACK quantizer
   (:func:`roadmap.measure.runtimes.executorch.quantize_int8`), the activation ranges
   calibrated on ``calibration`` training images seen through the evaluation transform
   (:func:`roadmap.train.data.calibration_split`), and lowered to an XNNPACK ``.pte`` program.
3. The program runs in the ExecuTorch runtime on every test image, beside the float32 form in
   torch; both are scored on the same images, so the comparison is paired: ``lost`` counts
   the images only float32 classifies right, ``gained`` those only int8 does. The Δ's
   confidence interval comes from those two counts (:func:`roadmap.study.stats.paired_delta`).

The result is stored in the run's ``metrics.json`` (field ``int8``) when the checkpoint is a
run's ``last.pt``, where ``roadmap table --int8`` finds it.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from roadmap.arch.reparam import fuse
from roadmap.arch.selection import Selection
from roadmap.errors import RoadmapError
from roadmap.measure.export import INT8_MIN_SQNR_DB, sqnr_db
from roadmap.measure.runtimes import executorch
from roadmap.results import store
from roadmap.results.record import Int8Scores
from roadmap.train import distributed
from roadmap.train.data import batches, calibration_split, make_loader
from roadmap.train.evaluate import checkpoint_model
from roadmap.train.run_options import RunOptions, open_data, workers
from roadmap.train.sources import parse_source

CALIBRATION_IMAGES = 512  # "a few hundred": PTQ's ranges settle well before this
PROGRAM_BATCH = 128  # images per call of the static-shape program


def evaluate_int8(
    selection: Selection,
    path: Path,
    data: str,
    options: RunOptions = RunOptions(),
    *,
    use_ema: bool = False,
    calibration: int = CALIBRATION_IMAGES,
    batch: int = PROGRAM_BATCH,
) -> Int8Scores:
    """Score the int8 program of a checkpoint beside its float32 deploy form (module doc):
    ``calibration`` training images calibrate it, ``batch`` images go through each call.

    Raises:
        RoadmapError: ExecuTorch is not installed, a foreign checkpoint, data with other
            classes, or an int8 program whose logits are mostly noise (a broken quantization).
    """
    if options.device != "cpu":
        raise RoadmapError("--int8 runs the ExecuTorch program on the CPU: drop --device")
    executorch.version()  # fail in one line before anything slow when it is missing
    model, recipe, state = checkpoint_model(selection, path, use_ema)
    alone = distributed.Processes(rank=0, world=1, device=torch.device("cpu"))
    opened = open_data(parse_source(data), recipe, options, alone)
    if opened.num_classes != model.num_classes:
        raise RoadmapError(f"{path} has {model.num_classes} classes, {data} {opened.num_classes}")
    deploy = fuse(model.eval())
    size = recipe.img_size
    example = torch.zeros(batch, 3, size, size)
    calibrate = DataLoader(calibration_split(opened, recipe, calibration), batch)
    program = executorch.program_bytes(
        deploy, example, int8=True, calibration=_padded(calibrate, batch)
    )
    threads = torch.get_num_threads()
    run = executorch.load_batched(program, threads, batch)
    loader = make_loader(opened.val, batch, train=False, workers=workers(options, opened))
    counts = _compare(deploy, run, loader)
    if counts["sqnr_db"] < INT8_MIN_SQNR_DB:  # the bound every int8 program is held to
        raise RoadmapError(
            f"the int8 program's logits are mostly noise (SQNR {counts['sqnr_db']:.1f} dB over "
            "the test split): the quantization is broken, not merely lossy; please report"
        )
    images = counts["images"]
    return Int8Scores(
        name=selection.name,
        spec_hash=state["spec_hash"],
        weights="ema" if use_ema else "model",
        images=images,
        float_top1=100 * counts["float_right"] / images,
        int8_top1=100 * counts["int8_right"] / images,
        lost=counts["lost"],
        gained=counts["gained"],
        agreement=100 * counts["same"] / images,
        sqnr_db=counts["sqnr_db"],
        calibration_images=len(calibrate.dataset),
        quantization=executorch.INT8,
        runtime=f"executorch {executorch.version()} runtime, {executorch.DELEGATE} delegate",
        threads=threads,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def _padded(loader: DataLoader, batch: int):
    """Calibration batches shaped as the program's input (the last one padded by repetition)."""
    for x, _ in loader:
        if len(x) < batch:
            x = torch.cat([x, x[torch.arange(batch - len(x)) % len(x)]])
        yield x


@torch.inference_mode()
def _compare(deploy: torch.nn.Module, run: Any, loader: DataLoader) -> dict[str, Any]:
    """Both forms on every test image: right/wrong per image, agreement, logits SQNR."""
    counts = dict.fromkeys(("images", "float_right", "int8_right", "lost", "gained", "same"), 0)
    logits: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
    for x, y, _ in batches(loader):
        if len(x) == 0:
            continue
        expected, got = deploy(x), run(x)
        a, b = expected.argmax(1) == y, got.argmax(1) == y
        counts["images"] += len(y)
        counts["float_right"] += int(a.sum())
        counts["int8_right"] += int(b.sum())
        counts["lost"] += int((a & ~b).sum())
        counts["gained"] += int((b & ~a).sum())
        counts["same"] += int((expected.argmax(1) == got.argmax(1)).sum())
        logits[0].append(expected)
        logits[1].append(got)
    if counts["images"] == 0:
        raise RoadmapError("the validation split has no readable images")
    counts["sqnr_db"] = sqnr_db(torch.cat(logits[0]), torch.cat(logits[1]))
    return counts


def store_in_record(scores: Int8Scores, path: Path) -> Path | None:
    """Add the scores to the record of the run whose ``last.pt`` was scored (field ``int8``);
    None when ``path`` is not a finished run's checkpoint. The run's lock is held meanwhile,
    so a training run in that folder and this write never interleave.

    Raises:
        RoadmapError: the record belongs to other weights (its spec hash differs), or a run
            holds the folder.
    """
    folder = Path(path).parent
    if Path(path).name != store.CHECKPOINT or store.read_record(folder) is None:
        return None
    with store.run_lock(folder):
        record = store.read_record(folder)
        if record is None:
            return None
        if record.spec_hash != scores.spec_hash:
            raise RoadmapError(
                f"{folder / store.METRICS} is the record of another network (spec "
                f"{record.spec_hash}, the checkpoint's {scores.spec_hash}); not stored"
            )
        store.write_record(folder, dataclasses.replace(record, int8=scores))
    return folder / store.METRICS
