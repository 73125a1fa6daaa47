"""Visformer's headline claim on this machine: does the convolution-friendly side win by more
under the weak recipe and with less data?

Trains DeiT-S, the transition's last step before attention goes (``no_position_embedding``,
the official code's net6) and Visformer-S under both of the paper's settings
(``visformer-base``: standard augmentation; ``visformer-elite``: DeiT's strong one), three
seeds each, on three training sets:

- ``digits``: all 1,437 training images of the bundled digits;
- ``digits/4``: a stratified quarter of them (360), trained for four times the epochs, so
  both see the same number of optimizer steps and only the data shrinks;
- ``fashion``: 1,437 Fashion-MNIST training images (a stratified subset, as many as the
  digits), evaluated on its whole 10,000-image test split.

54 runs of ``roadmap train``, two at a time with one torch thread each (the fastest way to
share two cores, ``benchmarks/busy_machine.py``), in that order of training sets, so a study
stopped early still holds whole sets. A finished run is not trained again: the script resumes
where it stopped.

The paper's recipes are for 300 epochs on ImageNet at 224 px; every run here is scaled the
same way (SCALE): 32 px, batch 64, 8 epochs with 1 of warm-up (32 and 4 on the quarter), the
quick recipe's learning rate (the paper's 5e-4 per 512 images is a rate for 300 epochs),
evaluated once, at the end. Nothing else of the two recipes changes, so the gap between them
is the paper's gap between its settings. Why 32 px: both datasets' images are at most 28 px,
so 32 px keeps all they hold; 64 px costs four times as much (a first try at 64 px with 5
epochs on the quarter took 1-2 min a run and stayed near chance). The price: at 32 px DeiT-S
sees 2x2 patches and Visformer-S's last stage a 1x1 map, so attention has little to attend
over on either side.

    python benchmarks/visformer_claim.py --results results/visformer_claim
    python benchmarks/visformer_claim.py --report     # the table, from what the store holds
    roadmap table --roadmap visformer --data digits --recipe visformer-base-<hash> ...

It writes ``claim.jsonl`` (one line per run: wall time, load) beside the store; ``--report``
writes ``claim.md`` there: per training set and setting, each network's top-1 (mean and 95 %
CI over seeds), and the gap of the last transition step and of Visformer-S over DeiT-S with
Welch's test and the seeds a t-test would need (``roadmap.study.stats``, as ``roadmap table``
computes them).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

NETWORKS = ("deit_s", "no_position_embedding", "visformer_s")
RECIPES = ("visformer-base", "visformer-elite")
# (name, --data, train_subset, how many times the base epochs): the order they are trained in
TRAINING_SETS = (
    ("digits", "digits", None, 1),
    ("digits/4", "digits", 360, 4),
    ("fashion", "fashion_mnist", 1437, 1),
)
SEEDS = (0, 1, 2)
EPOCHS, WARMUP = 8, 1


def scale(times: int) -> list[str]:
    """The options every run shares, with epochs (and warm-up) multiplied by ``times``."""
    epochs, warmup = EPOCHS * times, WARMUP * times
    return [
        "--img-size", "32", "--batch-size", "64", "--epochs", str(epochs), "--base-lr", "1.6e-2",
        "--set", f"warmup_epochs={warmup}", "--set", f"eval_every={epochs}",
    ]  # fmt: skip


def command(results: Path, network: str, recipe: str, training_set: tuple, seed: int) -> list:
    _, data, subset, times = training_set
    cmd = [sys.executable, "-m", "roadmap", "train", "--roadmap", "visformer", "--upto", network]
    cmd += ["--data", data, "--recipe", recipe, "--seed", str(seed), *scale(times)]
    cmd += ["--set", f"train_subset={subset}"] if subset else []
    return cmd + ["--results", str(results), "--quiet"]


def run(results: Path, log: Path, plan: tuple) -> None:
    network, recipe, training_set, seed = plan
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    load = os.getloadavg()[0]
    start = time.monotonic()
    done = subprocess.run(command(results, *plan), env=env, capture_output=True, text=True)
    line = {
        "network": network,
        "recipe": recipe,
        "training_set": training_set[0],
        "img_size": 32,
        "seed": seed,
        "seconds": round(time.monotonic() - start, 1),
        "load_before": round(load, 2),
        "exit": done.returncode,
        "error": done.stderr.strip().splitlines()[-1:] if done.returncode else [],
    }
    with log.open("a") as f:
        f.write(json.dumps(line) + "\n")
    print(json.dumps(line), flush=True)


def recorded(results: Path) -> dict[tuple, object]:
    """The study's finished runs in the store, keyed (training set, recipe, network, seed)."""
    from roadmap.results import store

    runs = {}
    for record in store.scan(results).records:
        if record.img_size != 32:
            continue  # the first try, at 64 px
        data = {"digits": "digits", "fashion_mnist": "fashion"}[record.data]
        name = "digits/4" if data == "digits" and record.train_images == 360 else data
        network = record.name.split(".", 1)[1]
        recipe = record.recipe.rsplit("-", 1)[0]
        runs[(name, recipe, network, record.seed)] = record
    return runs


def gap_change(deit_a: list, vis_a: list, deit_b: list, vis_b: list) -> str:
    """(Visformer-S − DeiT-S) in a minus the same in b, with its 95 % t interval (Welch-
    Satterthwaite degrees of freedom over the four independent groups)."""
    from scipy import stats as scipy_stats

    groups = (deit_a, vis_a, deit_b, vis_b)
    means = [statistics.fmean(g) for g in groups]
    change = (means[1] - means[0]) - (means[3] - means[2])
    terms = [statistics.variance(g) / len(g) for g in groups]
    se = sum(terms) ** 0.5
    dof = sum(terms) ** 2 / sum(t**2 / (len(g) - 1) for t, g in zip(terms, groups, strict=True))
    half = scipy_stats.t.ppf(0.975, dof) * se
    verdict = "excludes 0" if abs(change) > half else "includes 0"
    return f"{change:+.1f} [{change - half:.1f}, {change + half:.1f}] ({verdict})"


def report(results: Path) -> str:
    """The study as Markdown, from the records the store holds (whole or not)."""
    from roadmap.study import stats

    scores: dict[tuple, list[float]] = {}
    minutes: dict[str, list[float]] = {}
    for (name, recipe, network, _), record in recorded(results).items():
        scores.setdefault((name, recipe, network), []).append(record.top1)
        minutes.setdefault(network, []).append(record.train_time_s / 60)

    def cell(values: list[float]) -> str:
        if not values:
            return "—"
        ci = stats.mean_ci(values)
        spread = f" [{ci.low:.1f}, {ci.high:.1f}]" if ci.low is not None else ""
        return f"{ci.mean:.1f}{spread} ({ci.n})"

    def gap(a: list[float], b: list[float]) -> str:
        if len(a) < 2 or len(b) < 2:
            return "—"
        delta = sum(b) / len(b) - sum(a) / len(a)
        p = stats.welch_p(a, b)
        verdict = f"p = {p:.3f}" + (", a finding" if stats.is_finding(p) else ", not significant")
        needed = None if stats.is_finding(p) else stats.seeds_needed(a, b)
        seeds = f"; {needed} seeds would find it" if needed else ""
        return f"{delta:+.1f} ({verdict}{seeds})"

    lines = [
        "| training set | setting | DeiT-S | net6 | Visformer-S | net6 − DeiT-S | "
        "Visformer-S − DeiT-S |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, *_ in TRAINING_SETS:
        for recipe in RECIPES:
            got = [scores.get((name, recipe, n), []) for n in NETWORKS]
            if any(got):
                lines.append(
                    f"| {name} | {recipe.removeprefix('visformer-')} | "
                    + " | ".join(cell(v) for v in got)
                    + f" | {gap(got[0], got[1])} | {gap(got[0], got[2])} |"
                )
    lines += [
        "",
        "How the gap of Visformer-S over DeiT-S moves (points; 95 % interval, Welch-"
        "Satterthwaite over the four groups of seeds):",
        "",
    ]
    pairs = [(f"{n}: base − elite", (n, "visformer-base"), (n, "visformer-elite"))
             for n, *_ in TRAINING_SETS]  # fmt: skip
    pairs += [(f"{r.removeprefix('visformer-')}: digits/4 − digits", ("digits/4", r), ("digits", r))
              for r in RECIPES]  # fmt: skip
    for label, one, other in pairs:
        groups = [scores.get((*where, n), []) for where in (one, other) for n in NETWORKS[::2]]
        if all(len(g) >= 2 for g in groups):
            lines.append(f"- {label}: {gap_change(*groups)}")
    times = ", ".join(f"{n} {statistics.median(m):.1f}" for n, m in sorted(minutes.items()))
    lines += [
        "",
        "Top-1 %: mean [95 % CI, Student t] (seeds); gaps in points, Welch's t-test at p < 0.05.",
        f"Training minutes per run, median (two runs sharing two cores, one thread each): {times}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results/visformer_claim"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--report", action="store_true", help="write claim.md from the store")
    args = parser.parse_args()
    if args.report:
        text = report(args.results)
        (args.results / "claim.md").write_text(text)
        print(text)
        return
    args.results.mkdir(parents=True, exist_ok=True)
    log = args.results / "claim.jsonl"
    plan = list(itertools.product(NETWORKS, RECIPES, TRAINING_SETS, SEEDS))
    plan.sort(
        key=lambda p: (TRAINING_SETS.index(p[2]), p[3], p[1], p[0])
    )  # set by set, seed by seed
    done = recorded(args.results)
    plan = [p for p in plan if (p[2][0], p[1], p[0], p[3]) not in done]
    print(f"{len(done)} runs already recorded; {len(plan)} to train", flush=True)
    start = time.monotonic()
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda p: run(args.results, log, p), plan))
    print(f"{len(plan)} runs in {time.monotonic() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
