"""Training on a machine other work keeps busy: wall and CPU time of one run, idle and beside N
single-thread torch processes, with the thread count roadmap picks (the cores left free) and
with torch's own (all cores, OMP_NUM_THREADS set so roadmap leaves it).

Usage: .venv/bin/python benchmarks/busy_machine.py [--load 2] [--upto alternating_se]
       [--data digits] [--recipe quick] [--epochs 1] [--out results/benchmarks/busy_machine.md]
Run it on an otherwise idle machine: it makes the load itself.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOAD = "import torch\ntorch.set_num_threads(1)\nx = torch.randn(384, 384)\nwhile True:\n    x @ x\n"


def run(args: argparse.Namespace, load: int, threads: str | None) -> dict:
    """One training run beside ``load`` busy processes; ``threads`` pins OMP_NUM_THREADS."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if threads:
        env["OMP_NUM_THREADS"] = threads
    hogs = [subprocess.Popen([sys.executable, "-c", LOAD]) for _ in range(load)]
    time.sleep(2.0 if load else 0.0)  # let the load settle (and the load average notice it)
    with tempfile.TemporaryDirectory() as results:
        command = [sys.executable, "-m", "roadmap", "train", "--upto", args.upto, "--data",
                   args.data, "--recipe", args.recipe, "--epochs", str(args.epochs),
                   "--results", results]  # fmt: skip
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        record = next(Path(results).rglob("metrics.json"), None)
        top1 = json.loads(record.read_text())["top1"] if record else None
    for hog in hogs:
        hog.kill()
        hog.wait()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    said = [line for line in done.stderr.splitlines() if "machine is busy" in line]
    return {"load": load, "threads": threads or "roadmap's choice", "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1), "top1": top1, "exit": done.returncode,
            "said": said[0] if said else ""}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", type=int, default=2, help="busy single-thread processes")
    parser.add_argument("--upto", default="alternating_se")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--recipe", default="quick")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", default="results/benchmarks/busy_machine.md")
    args = parser.parse_args()
    cores = str(len(os.sched_getaffinity(0)))
    rows = [run(args, 0, None), run(args, args.load, cores), run(args, args.load, None)]
    lines = [
        f"# Training beside other work: `roadmap train --upto {args.upto} --data {args.data} "
        f"--recipe {args.recipe} --epochs {args.epochs}`",
        "",
        f"{cores} cores ({os.uname().machine}), load before the runs: "
        f"{open('/proc/loadavg').read().split()[0]}; busy processes: single-thread torch "
        "matmuls. CPU s: the training process and its children.",
        "",
        "| busy processes | threads | wall s | CPU s | top-1 % | roadmap said |",
        "|---:|---|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(f"| {r['load']} | {r['threads']} | {r['wall_s']} | {r['cpu_s']} | "
                     f"{r['top1']} | {r['said']} |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
