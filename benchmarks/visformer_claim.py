"""Visformer's headline claim on this machine: does the convolution-friendly side win by more
under the weak recipe and with less data?

Trains DeiT-S, the transition's last step before attention goes (``no_position_embedding``,
the official code's net6) and Visformer-S on the bundled digits, with all 1,437 training images
and with a stratified quarter of them (360), under both of the paper's settings
(``visformer-base``: standard augmentation; ``visformer-elite``: DeiT's strong one), three
seeds each: 36 runs of ``roadmap train``, two at a time with one torch thread each (the
fastest way to share two cores, ``benchmarks/busy_machine.py``). A finished run is not trained
again, so the script resumes where it stopped.

The paper's recipes are for 300 epochs on ImageNet at 224 px; here every run is scaled the
same way (SCALE below: 64 px, batch 64, 5 epochs, one warm-up epoch, the quick recipe's
learning rate, since 5e-4 x 64 / 512 learns next to nothing in 5 epochs). Nothing else of the
two recipes changes, so the gap between them is the paper's gap between its settings.

    python benchmarks/visformer_claim.py --results results/visformer_claim
    roadmap table --roadmap visformer --data digits --recipe visformer-base-<hash> ...

It writes ``claim.jsonl`` (one line per run: wall time, load) beside the store.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

NETWORKS = ("deit_s", "no_position_embedding", "visformer_s")
RECIPES = ("visformer-base", "visformer-elite")
SUBSETS = (360, None)  # a quarter of the digits' training split, then all of it
SEEDS = (0, 1, 2)
SCALE = [
    "--img-size", "64", "--batch-size", "64", "--epochs", "5", "--base-lr", "1.6e-2",
    "--set", "warmup_epochs=1",
]  # fmt: skip


def command(results: Path, network: str, recipe: str, subset: int | None, seed: int) -> list:
    cmd = [sys.executable, "-m", "roadmap", "train", "--roadmap", "visformer", "--upto", network]
    cmd += ["--data", "digits", "--recipe", recipe, "--seed", str(seed), *SCALE]
    cmd += ["--set", f"train_subset={subset}"] if subset else []
    return cmd + ["--results", str(results), "--quiet"]


def run(results: Path, log: Path, plan: tuple) -> None:
    network, recipe, subset, seed = plan
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    load = os.getloadavg()[0]
    start = time.monotonic()
    done = subprocess.run(command(results, *plan), env=env, capture_output=True, text=True)
    line = {
        "network": network,
        "recipe": recipe,
        "train_subset": subset,
        "seed": seed,
        "seconds": round(time.monotonic() - start, 1),
        "load_before": round(load, 2),
        "exit": done.returncode,
        "error": done.stderr.strip().splitlines()[-1:] if done.returncode else [],
    }
    with log.open("a") as f:
        f.write(json.dumps(line) + "\n")
    print(json.dumps(line), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results/visformer_claim"))
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    args.results.mkdir(parents=True, exist_ok=True)
    log = args.results / "claim.jsonl"
    plan = list(itertools.product(NETWORKS, RECIPES, SUBSETS, SEEDS))
    plan.sort(key=lambda p: (p[2] is None, p[3], p[1], p[0]))  # small data first, seed by seed
    start = time.monotonic()
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda p: run(args.results, log, p), plan))
    print(f"{len(plan)} runs in {time.monotonic() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
