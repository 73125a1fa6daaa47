"""What a distillation teacher costs per training step, on this machine.

One training step of the student (forward, loss, backward, AdamW) on one fixed random batch,
plain and with DeiT's hard distillation through ``roadmap.train.distill.DistillationLoss``
(the student then has its second head, the teacher runs in eval mode without gradients, once
per step), for each teacher named. Rounds interleave the configurations, so drift on the
machine hits them alike; the median seconds per step and the ratio to the plain step are
reported, with how busy other processes kept the machine.

    python benchmarks/distill_cost.py --student alternating_se \
        --teachers test_resnet,resnet50,regnety_160

Writes ``results/benchmarks/distill_cost.md``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import timm
import torch
from timm.optim import create_optimizer_v2
from torch import nn

import roadmap
from roadmap.arch.builder import build
from roadmap.arch.spec import replace
from roadmap.measure import host
from roadmap.measure.latency import device_name
from roadmap.train.distill import DistillationLoss

OUT = Path(__file__).resolve().parents[1] / "results" / "benchmarks" / "distill_cost.md"


def make_step(student: str, teacher: str | None, args: argparse.Namespace):  # noqa: ANN201
    """A closure that runs one training step."""
    torch.manual_seed(0)
    spec = roadmap.build_spec(student, num_classes=args.classes, roadmap="repvit")
    if teacher:
        spec = replace(spec, head=replace(spec.head, distillation=True))
    model = build(spec).train()
    model.set_distilled_training(teacher is not None)
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-4, weight_decay=0.05)
    loss: nn.Module = nn.CrossEntropyLoss()
    if teacher:
        taught = timm.create_model(teacher, num_classes=args.classes).eval().requires_grad_(False)
        loss = DistillationLoss(loss, taught, "hard", 0.5, 1.0)
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size)
    y = torch.randint(0, args.classes, (args.batch_size,))

    def step() -> None:
        out = model(x)
        value = loss(x, out, y) if teacher else loss(out, y)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="alternating_se")
    parser.add_argument("--teachers", default="test_resnet,resnet50,regnety_160")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    configs: list[str | None] = [None, *args.teachers.split(",")]
    steps = {c: make_step(args.student, c, args) for c in configs}
    for step in steps.values():
        step()  # warm-up
    times: dict[str | None, list[float]] = {c: [] for c in configs}
    watch = host.CpuWatch()
    for _ in range(args.rounds):
        order = list(configs)
        random.shuffle(order)
        for c in order:
            started = time.perf_counter()
            for _ in range(args.iters):
                steps[c]()
            times[c].append((time.perf_counter() - started) / args.iters)
    busy = host.busy_note(watch.stop())
    plain = statistics.median(times[None])
    lines = [
        "# What a distillation teacher costs per training step",
        "",
        f"`python benchmarks/distill_cost.py --student {args.student} --teachers "
        f"{args.teachers}`: student `{args.student}`, batch {args.batch_size}, "
        f"{args.img_size} px, {args.classes} classes, {device_name(torch.device('cpu'))}, "
        f"{args.threads} threads, torch {torch.__version__}, float32; median of {args.rounds} "
        f"interleaved rounds of {args.iters} steps; {busy}.",
        "",
        "| teacher | teacher params | s per step | vs no teacher |",
        "|---|---:|---:|---:|",
        f"| none | | {plain:.3f} | 1.00x |",
    ]
    for c in configs[1:]:
        params = sum(p.numel() for p in timm.create_model(c, num_classes=args.classes).parameters())
        median = statistics.median(times[c])
        lines.append(f"| {c} | {params:,} | {median:.3f} | {median / plain:.2f}x |")
    text = "\n".join(lines) + "\n"
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
