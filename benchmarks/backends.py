"""Backends benchmark: every runtime against eager, every step, and the share of the compute limit.

One interleaved run (``roadmap.latency.measure``, one iteration of every model per round, order
reshuffled each round) holds every roadmap step, fused, under every backend asked for, so the
backends meet the same machine state. From it:

(a) each backend's latency for RepViT-M0.9 (the last step) and its ratio against eager;
(b) the share of this machine's fp32 compute limit each backend reaches on RepViT-M0.9: its
    FLOPs per image (2 x the fused model's MACs, counted by fvcore) divided by its median
    latency, over the limit, which is the best of several large square matmuls (``torch.mm``,
    float32, the same threads) timed in the same process before and after the run;
(c) each backend's agreement with the paper's iPhone 12 latency column (sign of every step's
    Δ outside noise, Spearman ρ): ``roadmap.study.paper_agreement``.

    python benchmarks/backends.py --threads 2            # eager, torchscript, onnxruntime,
                                                         # executorch
    python benchmarks/backends.py --threads 2 --backends eager,compile

Writes ``results/benchmarks/backends_<threads>t.json`` (every record with its conditions) and
``results/benchmarks/backends.md``. A run during which other processes kept the machine busy is
repeated (``--retries``), as in ``benchmarks/latency.py``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from latency import least_contended_run  # this folder is on sys.path when run as a script

import roadmap
from roadmap import files
from roadmap.latency import Candidate, LatencyRecord, LatencySettings, compare, torch_threads
from roadmap.measure import count_macs
from roadmap.selection import every_step
from roadmap.study import paper_agreement, paper_numbers

OUT_DIR = Path(__file__).resolve().parent.parent / "results" / "benchmarks"
LAST = "alternating_se"
DEFAULT_BACKENDS = "eager,torchscript,onnxruntime,executorch"
TARGET_SHARE = 0.5  # the bar for the best backend on RepViT-M0.9


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


def candidates(backends: list[str]) -> list[Candidate]:
    out = []
    for selection in every_step():
        model = roadmap.fuse(roadmap.build(selection.spec()))
        for backend in backends:
            name = label(selection.name, backend)
            out.append(Candidate(name, model, selection.steps, True, backend))
    return out


def summarize(
    records: list[LatencyRecord], backends: list[str], gflop: float, limit: float
) -> dict:
    by = {r.step: r for r in records}
    paper = [paper_numbers(s)[1] for s in every_step()]
    eager = by[label(LAST, "eager")] if "eager" in backends else None
    rows = {}
    for backend in backends:
        last = by[label(LAST, backend)]
        steps = [by[label(s.name, backend)] for s in every_step()]
        agreement = paper_agreement(steps, paper)
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
    found = set()
    for r in records:
        c = r.conditions
        if c.executorch_version:
            found.add(f"executorch {c.executorch_version} ({c.delegate} delegate)")
        if c.onnxruntime_version:
            found.add(f"onnxruntime {c.onnxruntime_version}")
    return ", ".join(sorted(found))


def markdown(
    summary: dict, records: list[LatencyRecord], gflop: float, limit: dict, wall_s: float
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
        "Conditions (every backend, one interleaved run):",
        "",
        *[f"    {line}" for line in c.describe(True).splitlines()],
        f"    {_versions(records)}; {len(records)} models in one run of {wall_s:.0f} s",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="default: torch's")
    parser.add_argument("--backends", default=DEFAULT_BACKENDS, help="comma-separated")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=30, help="timed iterations per model")
    parser.add_argument("--retries", type=int, default=1, help="re-runs if others competed")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    backends = args.backends.split(",")
    settings = LatencySettings(threads=args.threads, warmup=args.warmup, iters=args.iters)
    gflop = 2 * count_macs(roadmap.fuse(roadmap.build_model(LAST))) / 1e9
    before = matmul_gflops(args.threads)
    print(f"compute limit before: {before:.0f} GFLOP/s; preparing {len(backends)} backends")
    records, wall_s = least_contended_run(candidates(backends), settings, args.retries)
    after = matmul_gflops(args.threads)
    limit = {"gflops": max(before, after), "before": before, "after": after}
    summary = summarize(records, backends, gflop, limit["gflops"])
    args.out_dir.mkdir(parents=True, exist_ok=True)
    threads = records[0].conditions.threads
    data = {
        "summary": summary,
        "gflop_per_image": gflop,
        "compute_limit": limit,
        "target_share": TARGET_SHARE,
        "wall_s": wall_s,
        "records": [r.to_dict() for r in records],
    }
    json_path = args.out_dir / f"backends_{threads}t.json"
    files.write_json(json_path, data)
    md_path = args.out_dir / "backends.md"
    files.write_text(md_path, markdown(summary, records, gflop, limit, wall_s))
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
