"""Training-step throughput with the batch already on the device: what the network costs alone.

``benchmarks/train_throughput.py`` compares whole training loops, data loading included; on a
fast GPU both loops can wait on the loader, and then the GPU's own speed is hidden. This script
times the step only (forward under autocast, label-smoothed loss, backward, timm's AdamW step)
on one fixed random batch that stays on the device, synchronized before and after, the way
timm's ``benchmark.py --bench train`` does. Rows: every network named, contiguous and
channels_last, float32 and AMP.

    python benchmarks/train_step.py --device cuda --steps mobilenetv3_large,alternating_se
    python benchmarks/train_step.py --steps all --img-size 64 --batch-size 64 --threads 2 \
        --classes 10 --share     # the `fashion` recipe's shapes, on the CPU

``--share`` adds each row's share of the machine's float32 compute limit: training FLOPs per
image, taken as 3 x the forward pass's (the backward pass costs about two forwards) = 6 x the
training-form MACs fvcore counts, times images/s, over the best float32 ``torch.mm`` rate on
the same threads (``backends.matmul_gflops``), measured before and after the rows.
"""

from __future__ import annotations

import argparse
import statistics
import time

import timm
import torch
from backends import matmul_gflops  # this folder is on sys.path when run as a script
from timm.loss import LabelSmoothingCrossEntropy
from timm.optim import create_optimizer_v2
from train_throughput import plain_step

import roadmap
from roadmap.measure import host
from roadmap.measure.counts import count_macs
from roadmap.measure.latency import device_name
from roadmap.train import setup
from roadmap.train.run_options import RunOptions

WATCH = host.CpuWatch()


def busy() -> str:
    """How busy other processes kept the machine since the script started."""
    return host.busy_note(WATCH.stop())


def images_per_s(
    step: str,
    args: argparse.Namespace,
    channels_last: bool,
    amp: bool,
    *,
    fused_adamw: bool = False,
    compile: bool = False,
    batch_size: int | None = None,
) -> tuple[float, float]:
    """Median images/s over ``args.rounds`` timed blocks of ``args.iters`` steps, and the
    seconds the first step took (with ``compile``: mostly compiling)."""
    device = torch.device(args.device)
    batch = batch_size or args.batch_size
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)
    where = getattr(args, "roadmap", "repvit")
    model = roadmap.build_model(step, num_classes=args.classes, roadmap=where)
    model = model.to(device, memory_format=fmt).train()
    extra = {"fused": True} if fused_adamw else {}
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-4, weight_decay=0.05, **extra)
    criterion = LabelSmoothingCrossEntropy(0.1)
    dtype = setup.amp_dtype(RunOptions(device=args.device, amp=amp))
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    x = torch.randn(batch, 3, args.img_size, args.img_size, device=device)
    x = x.contiguous(memory_format=fmt)
    y = torch.randint(0, args.classes, (batch,), device=device)
    net = torch.compile(model) if compile else model

    def one_step() -> None:
        plain_step(net, x, y, criterion, optimizer, scaler, dtype)

    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    started = time.perf_counter()
    one_step()
    sync()
    first = time.perf_counter() - started
    for _ in range(args.warmup):
        one_step()
    rates = []
    for _ in range(args.rounds):
        sync()
        started = time.perf_counter()
        for _ in range(args.iters):
            one_step()
        sync()
        rates.append(args.iters * batch / (time.perf_counter() - started))
    return statistics.median(rates), first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="mobilenetv3_large,alternating_se")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iters", type=int, default=20, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=3, help="timed blocks; the median is kept")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch's)")
    parser.add_argument("--share", action="store_true", help="add the share of the fp32 limit")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.steps == "all":
        args.steps = ",".join(roadmap.list_steps("repvit"))
    limit = matmul_gflops(args.threads) if args.share else None
    print(f"# Training-step throughput, batch on the device ({device_name(args.device)})\n")
    print(
        f"batch {args.batch_size} at {args.img_size} px, {args.classes} classes, timm AdamW, label "
        f"smoothing 0.1; median of {args.rounds} blocks of {args.iters} synchronized steps "
        f"after {args.warmup} warm-up steps; torch {torch.__version__}, timm {timm.__version__}\n"
    )
    print("| network | precision | memory format | images/s | share of the fp32 limit |")
    print("|---|---|---|---:|---:|")
    for step in args.steps.split(","):
        flops = 6 * count_macs(
            roadmap.build_model(step, num_classes=args.classes, roadmap="repvit"), args.img_size
        )
        for amp in (False, True):
            for channels_last in (False, True):
                rate, _ = images_per_s(step, args, channels_last, amp)
                dtype = setup.amp_dtype(RunOptions(device=args.device, amp=amp))
                precision = "float32" if dtype is None else f"AMP ({str(dtype)[6:]})"
                layout = "channels_last" if channels_last else "contiguous"
                share = f"{100 * rate * flops / 1e9 / limit:.1f} %" if limit else ""
                print(f"| {step} | {precision} | {layout} | {rate:,.0f} | {share} |", flush=True)
    if limit:
        after = matmul_gflops(args.threads)
        print(
            f"\nfp32 limit: {limit:.0f} GFLOP/s before the rows, {after:.0f} after "
            f"(2048x2048 torch.mm, {torch.get_num_threads()} threads); busy: {busy()}"
        )


if __name__ == "__main__":
    main()
