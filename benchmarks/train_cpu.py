"""Where a CPU training run's time goes, and what each option does to it.

The `fashion` study is CPU-bound: this script measures, on this machine, each part of a run
and each option that could make it cheaper, so that the defaults are chosen from figures.

    python benchmarks/train_cpu.py step      # train step alone, per network and option
    python benchmarks/train_cpu.py loader    # the data pipeline alone (images/s, workers)
    python benchmarks/train_cpu.py eval      # evaluation: old way vs the loop's way
    python benchmarks/train_cpu.py runs --tree before=/path/to/old/checkout --tree after=.
                                             # whole `roadmap train` runs, wall clock
    python benchmarks/train_cpu.py study --label jobs2 --jobs 2   # a whole `roadmap run`
    python benchmarks/train_cpu.py study-report                    # studies vs the old runs

``step`` reports each row's share of the machine's float32 limit: training FLOPs per image
taken as 6 x the training-form MACs fvcore counts (the backward pass costs about two
forwards), times images/s, over the best ``torch.mm`` rate measured in the same run.
``runs`` starts ``python -m roadmap train`` from each checkout named (its ``roadmap`` package
first on ``PYTHONPATH``) for every step, alternating which checkout goes first, and appends one
JSON line per run (wall clock from process start to exit, the record's accuracy, train time
and contention) to ``--jsonl``; ``report`` turns those lines into the README's table.
``study`` times one whole ``roadmap run --jobs N`` over the roadmap (process start to exit)
and writes a line per run from its record plus one for the study; ``study-report`` sets the
studies beside one checkout's ``runs`` (the study's wall clock against the sum of that
checkout's single runs, and the paired accuracy difference).
Every part records how busy other processes kept the machine: a figure taken beside another
job is not a figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from backends import matmul_gflops  # this folder is on sys.path when run as a script
from train_step import busy, images_per_s  # busy: since this script started

import roadmap
from roadmap.arch.reparam import fuse
from roadmap.measure import host
from roadmap.measure.counts import count_macs


def steps_named(text: str, roadmap_name: str) -> list[str]:
    return roadmap.list_steps(roadmap_name) if text == "all" else text.split(",")


# ----------------------------------------------------------------------------------------
# The training step alone

# (label, channels_last, bf16 autocast, fused AdamW, batch factor, torch.compile)
STEP_OPTIONS = (
    ("fp32, contiguous (the old default)", False, False, False, 1, False),
    ("fp32, channels_last (the CPU default)", True, False, False, 1, False),
    ("fp32, channels_last, fused AdamW", True, False, True, 1, False),
    ("fp32, channels_last, 2x batch", True, False, False, 2, False),
    ("bf16 autocast, channels_last", True, True, False, 1, False),
)
COMPILED = ("fp32, channels_last, torch.compile", True, False, False, 1, True)


def step(args: argparse.Namespace) -> None:
    """Per network and option: training images/s, the share of the fp32 limit; compile time."""
    limit = matmul_gflops(args.threads)
    print(f"batch {args.batch_size} at {args.img_size} px, {args.classes} classes, timm AdamW, "
          f"label smoothing 0.1; median of {args.rounds} blocks of {args.iters} steps after "
          f"{args.warmup} warm-up steps; {torch.get_num_threads()} threads; torch "
          f"{torch.__version__}\n")  # fmt: skip
    print("| network | option | images/s | share of the fp32 limit | first step s |")
    print("|---|---|---:|---:|---:|")
    compiled = set(args.compile_steps.split(",")) if args.compile_steps else set()
    for name in steps_named(args.steps, args.roadmap):
        model = roadmap.build_model(name, num_classes=args.classes, roadmap=args.roadmap)
        flops = 6 * count_macs(model, args.img_size)
        options = STEP_OPTIONS[:2] if args.formats_only else STEP_OPTIONS
        options += (COMPILED,) if name in compiled else ()
        for label, channels_last, amp, fused, factor, comp in options:
            batch = factor * args.batch_size
            rate, first = images_per_s(name, args, channels_last, amp, fused_adamw=fused,
                                       compile=comp, batch_size=batch)  # fmt: skip
            share = 100 * rate * flops / 1e9 / limit
            print(f"| {name} | {label} | {rate:,.0f} | {share:.1f} % | {first:.1f} |", flush=True)
    after = matmul_gflops(args.threads)
    print(f"\nfp32 limit: {limit:.0f} GFLOP/s before the rows, {after:.0f} after (2048x2048 "
          f"torch.mm, {torch.get_num_threads()} threads); training FLOPs = 6 x fvcore MACs; "
          f"busy: {busy()}")  # fmt: skip


# ----------------------------------------------------------------------------------------
# The data pipeline and evaluation


def _opened(args: argparse.Namespace):
    from roadmap.train.data import load_datasets
    from roadmap.train.recipe import load_recipe
    from roadmap.train.sources import parse_source

    recipe = load_recipe(args.recipe)
    return load_datasets(parse_source(args.data), recipe), recipe


def loader(args: argparse.Namespace) -> None:
    """The data pipeline alone: images/s of one training epoch and of the test split."""
    from roadmap.train.data import make_loader

    data, recipe = _opened(args)
    print(f"{args.data}, recipe {args.recipe} ({recipe.img_size} px), batch {recipe.batch_size}; "
          f"per-image PIL decoding and transforms, as training does\n")  # fmt: skip
    print("| split | workers | images | seconds | images/s |")
    print("|---|---:|---:|---:|---:|")
    for split, dataset, train in (("train", data.train, True), ("test", data.val, False)):
        for workers in args.workers:
            batches = make_loader(dataset, recipe.batch_size, train=train, workers=workers)
            started, n = time.perf_counter(), 0
            for x, _y, _ in batches:
                n += len(x)
            took = time.perf_counter() - started
            print(f"| {split} | {workers} | {n:,} | {took:.2f} | {n / took:,.0f} |", flush=True)
    print(f"\nbusy: {busy()}")


def evaluation(args: argparse.Namespace) -> None:
    """Scoring the test split: the old way (training form, ``no_grad``, the training batch,
    contiguous) against the loop's (fused, ``inference_mode``, 2x batch, channels_last)."""
    from torch.utils.data import Subset

    from roadmap.train.data import make_loader

    data, recipe = _opened(args)
    images = Subset(data.val, range(min(args.images, len(data.val))))
    ways = (
        ("training form, no_grad, batch 64, contiguous", False, torch.no_grad, 1, False),
        ("fused, inference_mode, batch 128, channels_last", True, torch.inference_mode, 2, True),
    )
    print(f"{len(images):,} test images of {args.data} at {recipe.img_size} px; "
          f"{torch.get_num_threads()} threads; best of {args.rounds} passes\n")  # fmt: skip
    print("| network | " + " | ".join(f"{w[0]} img/s" for w in ways) + " | speed-up |")
    print("|---|---:|---:|---:|")
    for name in steps_named(args.steps, args.roadmap):
        model = roadmap.build_model(name, num_classes=10, roadmap=args.roadmap).eval()
        rates = []
        for _label, fused, context, factor, channels_last in ways:
            net = fuse(model) if fused else model
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            net = net.to(memory_format=fmt)
            batches = make_loader(images, factor * recipe.batch_size, train=False, workers=0)
            best = 0.0
            for _ in range(args.rounds):
                started = time.perf_counter()
                with context():
                    for x, _y, _ in batches:
                        net(x.contiguous(memory_format=fmt))
                best = max(best, len(images) / (time.perf_counter() - started))
            rates.append(best)
        print(f"| {name} | {rates[0]:,.0f} | {rates[1]:,.0f} | {rates[1] / rates[0]:.2f}x |",
              flush=True)  # fmt: skip
    print(f"\nbusy: {busy()}")


# ----------------------------------------------------------------------------------------
# Whole runs


def timed(command: list[str], tree: Path, what: str) -> tuple[float, Any, str]:
    """Run a ``roadmap`` command from checkout ``tree`` (its package first on PYTHONPATH):
    (wall clock s, how busy other processes kept the machine, the checkout's revision)."""
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    watch = host.CpuWatch()
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=tree, capture_output=True, text=True)
    wall = time.perf_counter() - started
    contention = watch.stop()
    if done.returncode:
        raise SystemExit(f"{what} failed:\n{done.stderr[-2000:]}")
    revision = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip()  # fmt: skip
    return wall, contention, revision


def one_run(label: str, tree: Path, step: str, args: argparse.Namespace, keep: Path) -> dict:
    """``roadmap train --upto step`` from ``tree``, timed from process start to exit."""
    out = keep / label
    command = [sys.executable, "-m", "roadmap", "train", "--roadmap", args.roadmap,
               "--upto", step, "--data", args.data, "--recipe", args.recipe,
               "--seed", str(args.seed), "--results", str(out), "--quiet", *args.extra]  # fmt: skip
    wall, contention, revision = timed(command, tree, f"{label} {step}")
    record = json.loads(next(out.rglob(f"{step}/seed{args.seed}/metrics.json")).read_text())
    return {
        "label": label,
        "tree": revision,
        "step": step,
        "seed": args.seed,
        "wall_s": round(wall, 1),
        "train_time_s": round(record["train_time_s"], 1),
        "top1": record["top1"],
        "fused_top1": record["fused_top1"],
        "environment": record["environment"],
        "busy": host.busy_note(contention),
        "other_cpu_cores": round(contention.other_cpu_cores, 2) if contention else None,
    }


def runs(args: argparse.Namespace) -> None:
    trees = [(label, Path(path)) for label, path in (t.split("=", 1) for t in args.tree)]
    keep = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="train-cpu-"))
    for i, step in enumerate(steps_named(args.steps, args.roadmap)):
        order = trees if i % 2 == 0 else trees[::-1]
        for label, tree in order:
            line = one_run(label, tree, step, args, keep)
            print(json.dumps(line), flush=True)
            with open(args.jsonl, "a") as f:
                f.write(json.dumps(line) + "\n")


def study(args: argparse.Namespace) -> None:
    """``roadmap run --jobs N`` over the roadmap from ``tree``, timed from process start to
    exit: one line per run (from its record) and one for the whole study."""
    tree = Path(args.tree)
    out = Path(args.keep or tempfile.mkdtemp(prefix="train-cpu-study-")) / args.label
    command = [sys.executable, "-m", "roadmap", "run", "--roadmap", args.roadmap,
               "--data", args.data, "--recipe", args.recipe, "--seeds", args.seeds,
               "--jobs", str(args.jobs), "--results", str(out), "--quiet", *args.extra]  # fmt: skip
    wall, contention, revision = timed(command, tree, args.label)
    lines = []
    for path in sorted(out.rglob("metrics.json")):
        record = json.loads(path.read_text())
        lines.append({
            "label": args.label, "tree": revision, "step": record["name"],
            "seed": record["seed"], "wall_s": None,
            "train_time_s": round(record["train_time_s"], 1), "top1": record["top1"],
            "fused_top1": record["fused_top1"], "environment": record["environment"],
            "other_cpu_cores": (record.get("contention") or {}).get("other_cpu_cores"),
        })  # fmt: skip
    lines.append({
        "label": args.label, "tree": revision, "study": True, "jobs": args.jobs,
        "runs": len(lines), "wall_s": round(wall, 1), "busy": host.busy_note(contention),
        "other_cpu_cores": round(contention.other_cpu_cores, 2) if contention else None,
    })  # fmt: skip
    with open(args.jsonl, "a") as f:
        for line in lines:
            print(json.dumps(line), flush=True)
            f.write(json.dumps(line) + "\n")


def report(args: argparse.Namespace) -> None:
    """The per-step table of ``runs`` lines: wall clock and accuracy of each checkout."""
    lines = [json.loads(line) for line in Path(args.jsonl).read_text().splitlines() if line]
    labels = list(dict.fromkeys(line["label"] for line in lines))
    by = {(line["label"], line["step"]): line for line in lines}
    steps = list(dict.fromkeys(line["step"] for line in lines))
    head = " | ".join(f"{label} s | {label} top-1" for label in labels)
    print(f"| network | {head} | speed-up |")
    print("|---|" + "---:|" * (2 * len(labels) + 1))
    complete = [step for step in steps if all((label, step) in by for label in labels)]
    for step in steps:
        cells = []
        for label in labels:
            line = by.get((label, step))
            cells += [f"{line['wall_s']:.0f}", f"{line['top1']:.2f}"] if line else ["", ""]
        ratio = ""
        if step in complete and len(labels) > 1:
            ratio = f"{by[(labels[0], step)]['wall_s'] / by[(labels[-1], step)]['wall_s']:.2f}x"
        print(f"| {step} | {' | '.join(cells)} | {ratio} |")
    whole = [sum(by[(label, step)]["wall_s"] for step in complete) for label in labels]
    cells = " | ".join(f"{total:.0f} | " for total in whole)
    ratio = f"{whole[0] / whole[-1]:.2f}x" if len(labels) > 1 and whole[-1] else ""
    print(f"| all {len(complete)} | {cells} | {ratio} |")
    worst = max((line["other_cpu_cores"] or 0) for line in lines)
    print(f"\nmost any run shared the machine: other processes kept {worst} of the cores busy")


def study_report(args: argparse.Namespace) -> None:
    """The studies of ``study`` lines beside the ``before`` runs of a ``runs`` file: each
    network's top-1 and training time, the wall clock of each whole study, and the accuracy
    difference against ``before`` (paired t over the networks)."""
    from scipy import stats

    before = [json.loads(x) for x in Path(args.runs).read_text().splitlines() if x]
    before = {line["step"]: line for line in before if line["label"] == args.before}
    lines = [json.loads(x) for x in Path(args.jsonl).read_text().splitlines() if x]
    studies = {line["label"]: line for line in lines if line.get("study")}
    runs = {(line["label"], line["step"]): line for line in lines if not line.get("study")}
    labels = list(studies)
    head = " | ".join(f"{label} train s | {label} top-1" for label in labels)
    ref = args.before
    print(f"| network | {ref} wall s | {ref} train s | {ref} top-1 | {head} |")
    print("|---|" + "---:|" * (3 + 2 * len(labels)))
    for step, old in before.items():
        cells = [f"{old['wall_s']:.0f}", f"{old['train_time_s']:.0f}", f"{old['top1']:.2f}"]
        for label in labels:
            line = runs.get((label, step))
            cells += [f"{line['train_time_s']:.0f}", f"{line['top1']:.2f}"] if line else ["", ""]
        print(f"| {step} | {' | '.join(cells)} |")
    total = sum(old["wall_s"] for old in before.values())
    cells = " | ".join(f"**{studies[label]['wall_s']:.0f}** |" for label in labels)
    print(f"| whole study, wall clock s | **{total:.0f}** (a process per run) | | | {cells}")
    for label in labels:
        deltas = [runs[(label, step)]["top1"] - old["top1"] for step, old in before.items()]
        mean = sum(deltas) / len(deltas)
        test = stats.ttest_1samp(deltas, 0.0)
        low, high = test.confidence_interval(0.95)
        print(
            f"\n{label} (--jobs {studies[label]['jobs']}): {total / studies[label]['wall_s']:.2f}x "
            f"faster than {args.before}; top-1 {label} - {args.before} {mean:+.2f} points, 95 % CI "
            f"[{low:+.2f}, {high:+.2f}] (paired t over {len(deltas)} networks, p = "
            f"{test.pvalue:.2f}); {studies[label]['busy']}"
        )


# ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parts = parser.add_subparsers(dest="part", required=True)
    st = parts.add_parser("step", help="the training step alone, per network and option")
    st.add_argument("--steps", default="all")
    st.add_argument("--roadmap", default="repvit")
    st.add_argument("--img-size", type=int, default=64)
    st.add_argument("--batch-size", type=int, default=64)
    st.add_argument("--classes", type=int, default=10)
    st.add_argument("--warmup", type=int, default=3)
    st.add_argument("--iters", type=int, default=5, help="steps per timed block")
    st.add_argument("--rounds", type=int, default=3, help="timed blocks; the median is kept")
    st.add_argument("--threads", type=int, default=None, help="CPU threads (torch's)")
    st.add_argument(
        "--compile-steps",
        default="mobilenetv3_large,alternating_se",
        help="networks also timed under torch.compile (each compiles ~1 min)",
    )
    st.add_argument(
        "--formats-only",
        action="store_true",
        help="only contiguous against channels_last (float32)",
    )
    st.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    ld = parts.add_parser("loader", help="the data pipeline alone")
    ld.add_argument("--data", default="fashion_mnist")
    ld.add_argument("--recipe", default="fashion")
    ld.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ev = parts.add_parser("eval", help="evaluation, the old way and the loop's")
    ev.add_argument("--steps", default="all")
    ev.add_argument("--roadmap", default="repvit")
    ev.add_argument("--data", default="fashion_mnist")
    ev.add_argument("--recipe", default="fashion")
    ev.add_argument("--images", type=int, default=2048)
    ev.add_argument("--rounds", type=int, default=2)
    run = parts.add_parser("runs", help="whole training runs from one or more checkouts")
    run.add_argument("--tree", action="append", required=True, help="LABEL=PATH (repeatable)")
    run.add_argument("--steps", default="all")
    run.add_argument("--roadmap", default="repvit")
    run.add_argument("--data", default="fashion_mnist")
    run.add_argument("--recipe", default="fashion")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--keep", help="file the runs (checkpoints too) under KEEP/LABEL")
    run.add_argument("--jsonl", default="train_cpu_runs.jsonl", help="append one line per run")
    run.add_argument("extra", nargs="*", help="more `roadmap train` options, after --")
    sy = parts.add_parser("study", help="a whole `roadmap run --jobs N`, timed")
    sy.add_argument("--tree", default=".", help="the checkout to run")
    sy.add_argument("--label", required=True, help="this study's name in the JSON lines")
    sy.add_argument("--jobs", type=int, default=1, help="roadmap run --jobs")
    sy.add_argument("--roadmap", default="repvit")
    sy.add_argument("--data", default="fashion_mnist")
    sy.add_argument("--recipe", default="fashion")
    sy.add_argument("--seeds", default="0")
    sy.add_argument("--keep", help="file the runs under KEEP/LABEL (default: a temporary folder)")
    sy.add_argument("--jsonl", default="train_cpu_study.jsonl", help="append the lines here")
    sy.add_argument("extra", nargs="*", help="more `roadmap run` options, after --")
    sr = parts.add_parser("study-report", help="the studies beside the runs of one checkout")
    sr.add_argument("--runs", default="results/benchmarks/train_cpu_runs.jsonl")
    sr.add_argument("--before", default="before", help="the runs file's label to compare with")
    sr.add_argument("--jsonl", default="results/benchmarks/train_cpu_study.jsonl")
    rep = parts.add_parser("report", help="the table of a runs file")
    rep.add_argument("--jsonl", default="train_cpu_runs.jsonl")
    args = parser.parse_args()
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    parts = {
        "step": step,
        "loader": loader,
        "eval": evaluation,
        "runs": runs,
        "study": study,
        "study-report": study_report,
        "report": report,
    }
    parts[args.part](args)


if __name__ == "__main__":
    main()
