"""int8 accuracy per step: what post-training int8 quantization costs each trained network.

For every step of the roadmap with a run in the store (``--results/--data/--recipe``), scores
the run's ``last.pt`` as ``roadmap eval --int8`` does (the ExecuTorch int8 program beside the
fused float32 network, image by image on the whole test split) unless its record already holds
the scores, stores them in the record, and prints one table of all of them.

    python benchmarks/int8_accuracy.py --results results --data fashion_mnist --recipe fashion
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import roadmap
from roadmap.arch.selection import Selection
from roadmap.measure import host
from roadmap.results import store
from roadmap.study.stats import paired_delta
from roadmap.train.int8 import evaluate_int8, store_in_record
from roadmap.train.run_options import RunOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--data", default="fashion_mnist")
    parser.add_argument("--recipe", default="fashion")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--roadmap", default="repvit")
    parser.add_argument("--calibration", type=int, default=512, help="calibration images")
    args = parser.parse_args()
    rows = []
    for step in roadmap.list_steps(args.roadmap):
        selection = Selection.of(args.roadmap, step)
        folder = store.RunKey(args.data, args.recipe, selection.name, args.seed).folder(
            args.results
        )
        record = store.read_record(folder)
        if record is None:
            print(f"{step}: no finished run in {folder}; skipped", flush=True)
            continue
        if record.int8 is None:
            started = time.perf_counter()
            scores = evaluate_int8(selection, folder / store.CHECKPOINT, args.data,
                                   RunOptions(workers=0), calibration=args.calibration)  # fmt: skip
            store_in_record(scores, folder / store.CHECKPOINT)
            print(f"{step}: scored in {time.perf_counter() - started:.0f} s", flush=True)
            record = store.read_record(folder)
        rows.append((step, record.int8))
    print("\n| step | float32 top-1 | int8 top-1 | Δ [95 %] | McNemar p | lost / gained | "
          "same class | logits SQNR dB |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for step, q in rows:
        d = paired_delta(q.lost, q.gained, q.images)
        print(f"| {step} | {q.float_top1:.2f} | {q.int8_top1:.2f} | {d.delta:+.2f} "
              f"[{d.low:+.2f}, {d.high:+.2f}] | {d.p_value:.2g} | {q.lost} / {q.gained} "
              f"| {q.agreement:.1f} % | {q.sqnr_db:.1f} |")  # fmt: skip
    if rows:
        q = rows[0][1]
        print(f"\n{q.images:,} test images of {args.data} ({args.recipe}, seed {args.seed}); "
              f"{q.calibration_images} calibration images; {q.quantization}; "
              f"{q.runtime}, {q.threads} threads; {host.cpu_name()}")  # fmt: skip


if __name__ == "__main__":
    main()
