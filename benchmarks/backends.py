"""Backends benchmark: every runtime against eager, every step, and the share of the compute limit.

Every roadmap step, fused, under every backend asked for, measured in rounds: each round runs
``roadmap latency --all --backend B`` once per backend, in a fresh process and a reshuffled
order, and each backend's samples are pooled over the rounds, so drift on the machine hits every
backend alike. Backends run in separate processes because runtimes with thread pools of their
own disturb each other inside one process: interleaving eager, ONNX Runtime and ExecuTorch
iteration by iteration in one process on 2 threads measured eager at 29.9 ms [IQR 19.5] instead
of ~22 ms alone, and ExecuTorch at 11.9 [5.2] instead of ~7 (their idle worker threads spin,
waiting for work, on the cores the next runtime needs). Within a process, the 11 steps are
interleaved round by round as ``roadmap latency --all`` does. From the pooled samples:

(a) each backend's latency for RepViT-M0.9 (the last step) and its ratio against eager;
(b) the share of this machine's fp32 compute limit each backend reaches on RepViT-M0.9: its
    FLOPs per image (2 x the fused model's MACs, counted by fvcore) divided by its median
    latency, over the limit, which is the best of several large square matmuls (``torch.mm``,
    float32, the same threads) timed in the same process before and after the run;
(c) each backend's agreement with the paper's iPhone 12 latency column (sign of every step's
    Δ outside noise, Spearman ρ): ``roadmap.study.agreement.paper_agreement``.

    python benchmarks/backends.py --threads 2            # eager, torchscript, onnxruntime,
                                                         # executorch
    python benchmarks/backends.py --threads 2 --last-only --backends eager,compile,executorch

``--last-only`` times RepViT-M0.9 alone (``roadmap latency --upto alternating_se``): for
``compile``, which compiles for about 25 s per network on 2 cores, so every step would take
minutes per round; there is then no agreement column.

Writes ``results/benchmarks/backends_<threads>t.json`` (every round's records with their
conditions, and the pooled ones) and ``results/benchmarks/backends.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import torch

import roadmap
from roadmap.measure.conditions import Conditions
from roadmap.measure.counts import count_macs
from roadmap.measure.host import Contention
from roadmap.measure.latency import LatencyRecord, compare, record_of, torch_threads
from roadmap.study.agreement import paper_agreement
from roadmap.study.comparison import paper_numbers
from roadmap.study.plan import every_step
from roadmap.util import files

OUT_DIR = Path(__file__).resolve().parent.parent / "results" / "benchmarks"
LAST = "alternating_se"
DEFAULT_BACKENDS = "eager,torchscript,onnxruntime,executorch"
TARGET_SHARE = 0.5
EACH = "each row's backend"  # the bar for the best backend on RepViT-M0.9


def matmul_gflops(threads: int | None, n: int = 2048, repeats: int = 10) -> float:
    """The best fp32 GFLOP/s of ``n x n`` matmuls on this many threads: the compute limit."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    with torch_threads(threads), torch.inference_mode():
        for _ in range(3):
            torch.mm(a, b)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def label(step: str, backend: str) -> str:
    return f"{step} @ {backend}"


def measure_round(backend: str, args: argparse.Namespace) -> list[LatencyRecord]:
    """``roadmap latency --all`` (or ``--upto`` the last step) with one backend, in a fresh
    process."""
    which = ["--upto", LAST] if args.last_only else ["--all"]
    cmd = [sys.executable, "-m", "roadmap", "latency", *which, "--backend", backend]
    cmd += ["--warmup", str(args.warmup), "--iters", str(args.iters), "--format", "json"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return [_record(r) for r in json.loads(done.stdout)["records"]]


def _record(data: dict) -> LatencyRecord:
    conditions = Conditions(
        **{**data["conditions"], "contention": Contention(**data["conditions"]["contention"])}
    )
    return LatencyRecord(**{**data, "conditions": conditions})


def pooled(rounds: list[list[LatencyRecord]], backend: str) -> list[LatencyRecord]:
    """One record per step with the samples of every round; the busiest round's conditions."""
    busiest = max(rounds, key=lambda rs: rs[0].conditions.contention.other_cpu_cores or 0.0)
    out = []
    for i, first in enumerate(rounds[0]):
        samples = [s for rs in rounds for s in rs[i].samples_ms]
        conditions = dataclasses.replace(
            busiest[i].conditions, iters=len(samples), interleaved_models=len(rounds[0])
        )
        out.append(record_of(label(first.step, backend), first.steps, True, samples, conditions))
    return out


def summarize(
    records: list[LatencyRecord], backends: list[str], gflop: float, limit: float
) -> dict:
    by = {r.step: r for r in records}
    every = len(records) == len(backends) * len(every_step("repvit"))
    paper = [paper_numbers(s)[1] for s in every_step("repvit")]
    eager = by[label(LAST, "eager")] if "eager" in backends else None
    rows = {}
    for backend in backends:
        last = by[label(LAST, backend)]
        steps = [by[label(s.name, backend)] for s in every_step("repvit")] if every else []
        agreement = paper_agreement(steps, paper) if every else None
        achieved = gflop / (last.median_ms / 1e3)
        rows[backend] = {
            "median_ms": last.median_ms,
            "iqr_ms": last.iqr_ms,
            "vs_eager": compare(eager, last).to_dict() if eager else None,
            "gflops": achieved,
            "share_of_limit": achieved / limit,
            "paper_agreement": agreement.to_dict() if agreement else None,
        }
    return rows


def _versions(records: list[LatencyRecord]) -> str:
    return ", ".join(sorted({r.conditions.runtime() for r in records}))


def markdown(
    summary: dict,
    records: list[LatencyRecord],
    gflop: float,
    limit: dict,
    wall_s: float,
    rounds: int,
) -> str:
    c = records[0].conditions
    lines = [
        "# Backends benchmark (`benchmarks/backends.py`)",
        "",
        f"RepViT-M0.9 (the last step, fused): {gflop:.2f} GFLOP per image (2 x fvcore's MACs).",
        f"Compute limit: the best fp32 `torch.mm` of 2048x2048 matrices on {c.threads} threads, "
        f"{limit['gflops']:.0f} GFLOP/s (best before the run {limit['before']:.0f}, after "
        f"{limit['after']:.0f}).",
        "",
        "| backend | RepViT-M0.9 ms [IQR] | vs eager | GFLOP/s | share of limit "
        "| Δ sign as the paper's | Spearman ρ |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for backend, row in summary.items():
        vs = row["vs_eager"]
        ratio = "—" if vs is None else f"{vs['ratio']:.2f}x" + (" ≈" if vs["noise"] else "")
        a = row["paper_agreement"]
        sign = f"{a['same_sign']}/{a['counted']} (+{a['within_noise']} within noise)" if a else "—"
        rho = f"{a['rho']:+.2f} ({a['steps']} steps)" if a and a["rho"] is not None else "—"
        lines.append(
            f"| {backend} | {row['median_ms']:.2f} [{row['iqr_ms']:.2f}] | {ratio} | "
            f"{row['gflops']:.0f} | {100 * row['share_of_limit']:.0f} % | {sign} | {rho} |"
        )
    lines += [
        "",
        "≈ = the difference from eager is within noise (below the pooled IQR). Agreement: "
        "every step's latency Δ against the paper's iPhone 12 column, as in `roadmap table`.",
        "",
        f"Conditions: {rounds} rounds, each running every backend once in a fresh process "
        f"(reshuffled order), {len(records) // len(summary)} network(s) interleaved within it; "
        "samples pooled over the "
        "rounds; the busiest round's contention shown:",
        "",
        *[f"    {line}" for line in dataclasses.replace(c, backend=EACH).describe().splitlines()],
        f"    {_versions(records)}; {wall_s:.0f} s in all",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="default: torch's")
    parser.add_argument("--backends", default=DEFAULT_BACKENDS, help="comma-separated")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20, help="timed iterations per round")
    parser.add_argument("--rounds", type=int, default=3, help="processes per backend")
    parser.add_argument("--last-only", action="store_true", help="RepViT-M0.9 alone")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    backends = args.backends.split(",")
    gflop = 2 * count_macs(roadmap.fuse(roadmap.build_model(LAST, roadmap="repvit"))) / 1e9
    before = matmul_gflops(args.threads)
    print(f"compute limit before: {before:.0f} GFLOP/s")
    start = time.perf_counter()
    rounds: dict[str, list[list[LatencyRecord]]] = {b: [] for b in backends}
    order = list(backends)
    rng = random.Random(0)
    for r in range(args.rounds):
        rng.shuffle(order)
        for backend in order:
            rounds[backend].append(measure_round(backend, args))
            print(
                f"round {r + 1}/{args.rounds}: {backend} done ({time.perf_counter() - start:.0f} s)"
            )
    wall_s = time.perf_counter() - start
    after = matmul_gflops(args.threads)
    limit = {"gflops": max(before, after), "before": before, "after": after}
    records = [r for b in backends for r in pooled(rounds[b], b)]
    summary = summarize(records, backends, gflop, limit["gflops"])
    args.out_dir.mkdir(parents=True, exist_ok=True)
    threads = records[0].conditions.threads
    data = {
        "summary": summary,
        "gflop_per_image": gflop,
        "compute_limit": limit,
        "target_share": TARGET_SHARE,
        "rounds": args.rounds,
        "wall_s": wall_s,
        "records": [r.to_dict() for r in records],
        "per_round": {b: [[r.to_dict() for r in rs] for rs in rounds[b]] for b in backends},
    }
    suffix = "_last" if args.last_only else ""
    json_path = args.out_dir / f"backends_{threads}t{suffix}.json"
    files.write_json(json_path, data)
    md_path = args.out_dir / f"backends{suffix}.md"
    files.write_text(md_path, markdown(summary, records, gflop, limit, wall_s, args.rounds))
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
