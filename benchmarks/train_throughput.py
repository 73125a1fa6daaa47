"""Training throughput of ``roadmap train`` against a minimal plain-timm loop.

Both train the same network on the same synthetic data, with the same batch, optimizer
(timm's AdamW), loss (label smoothing), precision (``--amp``: bfloat16 autocast where the
device supports it, as ``roadmap train --amp`` chooses), data-loading workers, threads and
device, in one process. The plain loop is
the least a training script can do: forward, loss, backward, step. ``roadmap train`` adds
its learning-rate schedule, progress bars, NaN checks and per-epoch bookkeeping; this script
measures what those cost. Rounds alternate between the two so that drift in machine load hits
both alike (and which one runs first alternates too); the first epoch of each run is warm-up
and is not counted.

    python benchmarks/train_throughput.py --upto alternating_se --img-size 64 --batch-size 32
    python benchmarks/train_throughput.py --device cuda --amp --workers 8 --img-size 224 \\
        --batch-size 256 --images 25600 --write results/benchmarks/train_throughput.md

Target: roadmap's images/s >= 0.95 x the plain loop's.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import timm
import torch
from timm.loss import LabelSmoothingCrossEntropy
from timm.optim import create_optimizer_v2

import roadmap
from roadmap.arch.selection import Selection
from roadmap.results import store
from roadmap.train import loop as training
from roadmap.train import setup
from roadmap.train.datasets import SYNTHETIC_CLASSES, SyntheticImages
from roadmap.train.recipe import load_recipe
from roadmap.train.run_options import RunOptions
from roadmap.util import files

TARGET = 0.95


def roadmap_images_per_s(args: argparse.Namespace, out: Path) -> float:
    """images/s of ``roadmap train`` over the epochs after the first (from its log)."""
    recipe = _recipe(args)
    options = RunOptions(
        device=args.device,
        quiet=not args.progress,
        results=out,
        channels_last=args.channels_last,
        amp=args.amp,
        workers=args.workers,
    )
    record = training.train(
        Selection.of("repvit", args.upto), f"synthetic:{args.images}", recipe, options
    )
    folder = store.RunKey(record.data, record.recipe, record.name, 0).folder(out)
    epochs = store.read_jsonl(folder / store.LOG)[1:]
    return sum(e["images_per_s"] * e["epoch_time_s"] for e in epochs) / sum(
        e["epoch_time_s"] for e in epochs
    )


def plain_step(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    criterion: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The least a training step does: forward (under autocast when ``dtype``), loss, backward,
    optimizer step. Shared with ``train_step.py``."""
    with setup.autocast(x.device, dtype):
        loss = criterion(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss


def plain_images_per_s(args: argparse.Namespace) -> float:
    """images/s of the minimal loop over the epochs after the first."""
    recipe = _recipe(args)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = roadmap.build_model(args.upto, num_classes=SYNTHETIC_CLASSES, roadmap="repvit").to(
        device
    )
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = create_optimizer_v2(
        model, "adamw", lr=recipe.peak_lr(), weight_decay=recipe.weight_decay
    )
    criterion = LabelSmoothingCrossEntropy(recipe.label_smoothing)
    loader = torch.utils.data.DataLoader(
        SyntheticImages(args.images, args.img_size),
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.workers,
        pin_memory=args.device == "cuda",
    )
    dtype = setup.amp_dtype(RunOptions(device=args.device, amp=args.amp))
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    model.train()
    images, seconds = 0, 0.0
    for epoch in range(args.epochs):
        started = time.perf_counter()
        for x, y in loader:
            x = x.to(device, non_blocking=True, memory_format=memory_format)
            y = y.to(device, non_blocking=True)
            loss = plain_step(model, x, y, criterion, optimizer, scaler, dtype)
        loss.item()  # wait for the device
        if epoch > 0:
            images += len(loader) * args.batch_size
            seconds += time.perf_counter() - started
    return images / seconds


def _recipe(args: argparse.Namespace) -> object:
    """The quick recipe at the benchmark's size: no Mixup, no EMA, as in the plain loop."""
    return load_recipe(
        "quick", epochs=args.epochs, batch_size=args.batch_size, img_size=args.img_size
    )


def cpu_name() -> str:
    """The CPU's model name (Linux), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def conditions(args: argparse.Namespace) -> dict[str, str]:
    device = torch.cuda.get_device_name() if args.device == "cuda" else cpu_name()
    return {
        "network": f"--upto {args.upto} ({SYNTHETIC_CLASSES} classes)",
        "data": f"synthetic, {args.images} images per epoch at {args.img_size} px",
        "batch": str(args.batch_size),
        "epochs per run": f"{args.epochs} (the first not counted)",
        "rounds": f"{args.rounds}, alternating which runs first; median and best reported",
        "device": f"{args.device} ({device}, {os.cpu_count()} cores visible)",
        "threads": str(torch.get_num_threads()),
        "memory format": "channels_last" if args.channels_last else "contiguous (NCHW)",
        "precision": _precision(args),
        "data-loading workers": str(args.workers),
        "torch / timm": f"{torch.__version__} / {timm.__version__}",
        "python / OS": f"{platform.python_version()} / {platform.platform()}",
    }


def _precision(args: argparse.Namespace) -> str:
    dtype = setup.amp_dtype(RunOptions(device=args.device, amp=args.amp))
    return "float32" if dtype is None else f"AMP, autocast to {str(dtype).removeprefix('torch.')}"


def markdown(rows: list[tuple[float, float]], args: argparse.Namespace) -> str:
    ours = statistics.median(r for r, _ in rows)
    plain = statistics.median(p for _, p in rows)
    paired = statistics.median(r / p for r, p in rows)
    lines = [
        "# Training throughput: `roadmap train` vs a plain timm loop",
        "",
        f"Measured by `benchmarks/train_throughput.py` (target: roadmap >= {TARGET:.2f} x plain).",
        "",
        f"**Median of the per-round ratios: {paired:.3f}** "
        f"({'meets' if paired >= TARGET else 'misses'} the target). Each round runs both "
        "loops back to back, so its ratio is the least disturbed by the machine's drift. "
        f"The per-round ratios range from {min(r / p for r, p in rows):.2f} to "
        f"{max(r / p for r, p in rows):.2f} (both sides of 1): the noise of the machine, larger "
        "than any difference between the loops.",
        "",
        "| round | roadmap train (img/s) | plain timm loop (img/s) | ratio |",
        "|---:|---:|---:|---:|",
    ]
    lines += [f"| {i + 1} | {r:.1f} | {p:.1f} | {r / p:.3f} |" for i, (r, p) in enumerate(rows)]
    best_ours, best_plain = max(r for r, _ in rows), max(p for _, p in rows)
    lines += [f"| **median** | **{ours:.1f}** | **{plain:.1f}** | **{ours / plain:.3f}** |"]
    lines += [f"| best | {best_ours:.1f} | {best_plain:.1f} | {best_ours / best_plain:.3f} |", ""]
    lines += ["Conditions:", ""] + [f"- {k}: {v}" for k, v in conditions(args).items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upto", default="alternating_se", help="the step to train")
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--images", type=int, default=512, help="images per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="per run; the first is warm-up")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--amp", action="store_true", help="mixed precision in both loops")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers, both loops")
    parser.add_argument("--progress", action="store_true", help="show roadmap's progress bars")
    parser.add_argument("--write", type=Path, default=None, help="also write this .md file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            if i % 2:  # alternate which one runs first
                plain = plain_images_per_s(args)
                ours = roadmap_images_per_s(args, Path(tmp) / f"round{i}")
            else:
                ours = roadmap_images_per_s(args, Path(tmp) / f"round{i}")
                plain = plain_images_per_s(args)
            rows.append((ours, plain))
            print(
                f"round {i + 1}: roadmap {ours:.1f} img/s, plain {plain:.1f} img/s, "
                f"ratio {ours / plain:.3f}",
                flush=True,
            )
    text = markdown(rows, args)
    print(text)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        files.write_text(args.write, text)


if __name__ == "__main__":
    main()
