"""Training-step throughput with the batch already on the device: what the network costs alone.

``benchmarks/train_throughput.py`` compares whole training loops, data loading included; on a
fast GPU both loops can wait on the loader, and then the GPU's own speed is hidden. This script
times the step only (forward under autocast, label-smoothed loss, backward, timm's AdamW step)
on one fixed random batch that stays on the device, synchronized before and after, the way
timm's ``benchmark.py --bench train`` does. Rows: every network named, contiguous and
channels_last, float32 and AMP.

    python benchmarks/train_step.py --device cuda --steps mobilenetv3_large,alternating_se
"""

from __future__ import annotations

import argparse
import statistics
import time

import timm
import torch
from timm.loss import LabelSmoothingCrossEntropy
from timm.optim import create_optimizer_v2
from train_throughput import plain_step  # this folder is on sys.path when run as a script

import roadmap
from roadmap.measure.latency import device_name
from roadmap.train import setup
from roadmap.train.run_options import RunOptions


def images_per_s(step: str, args: argparse.Namespace, channels_last: bool, amp: bool) -> float:
    """Median images/s over ``args.rounds`` timed blocks of ``args.iters`` steps."""
    device = torch.device(args.device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)
    model = roadmap.build_model(step).to(device, memory_format=fmt).train()
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-4, weight_decay=0.05)
    criterion = LabelSmoothingCrossEntropy(0.1)
    dtype = setup.amp_dtype(RunOptions(device=args.device, amp=amp))
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size, device=device)
    x = x.contiguous(memory_format=fmt)
    y = torch.randint(0, 1000, (args.batch_size,), device=device)

    def one_step() -> None:
        plain_step(model, x, y, criterion, optimizer, scaler, dtype)

    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    for _ in range(args.warmup):
        one_step()
    rates = []
    for _ in range(args.rounds):
        sync()
        started = time.perf_counter()
        for _ in range(args.iters):
            one_step()
        sync()
        rates.append(args.iters * args.batch_size / (time.perf_counter() - started))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="mobilenetv3_large,alternating_se")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iters", type=int, default=20, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=3, help="timed blocks; the median is kept")
    args = parser.parse_args()
    print(f"# Training-step throughput, batch on the device ({device_name(args.device)})\n")
    print(
        f"batch {args.batch_size} at {args.img_size} px, 1000 classes, timm AdamW, label "
        f"smoothing 0.1; median of {args.rounds} blocks of {args.iters} synchronized steps "
        f"after {args.warmup} warm-up steps; torch {torch.__version__}, timm {timm.__version__}\n"
    )
    print("| network | precision | memory format | images/s |")
    print("|---|---|---|---:|")
    for step in args.steps.split(","):
        for amp in (False, True):
            for channels_last in (False, True):
                rate = images_per_s(step, args, channels_last, amp)
                dtype = setup.amp_dtype(RunOptions(device=args.device, amp=amp))
                precision = "float32" if dtype is None else f"AMP ({str(dtype)[6:]})"
                layout = "channels_last" if channels_last else "contiguous"
                print(f"| {step} | {precision} | {layout} | {rate:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
