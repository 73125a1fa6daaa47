"""Markdown tables from the folder ``benchmarks/gpu.sh`` wrote.

    python benchmarks/gpu_report.py results/benchmarks/gpu_h200

Latency cells are the median of the synchronized per-iteration times in ms, with the IQR;
every model of one table column was measured in one interleaved run (``roadmap latency --all``),
while the columns come from separate runs one after the other on the same machine.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = (
    ("fused", "fused, contiguous"),
    ("unfused", "unfused (training form)"),
    ("channels_last", "fused, channels_last"),
)


def load(folder: Path, name: str) -> dict[str, dict] | None:
    """{label: record} from one latency run's JSON output, or None if that run failed."""
    path = folder / f"{name}.out"
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return {r["step"]: r for r in data["records"]}


def cell(record: dict | None) -> str:
    if record is None:
        return "–"
    return f"{record['median_ms']:.2f} ± {record['iqr_ms']:.2f}"


def latency_table(folder: Path, batch: int) -> list[str]:
    runs = {key: load(folder, f"latency_b{batch}_{key}") for key, _ in COLUMNS}
    compiled = {}
    for name in folder.glob(f"compile_b{batch}_*.out"):
        compiled.update(load(folder, name.stem) or {})
    fused = runs["fused"] or {}
    heads = [title for _, title in COLUMNS] + ["fused, torch.compile"]
    lines = [
        f"| step (batch {batch}) | " + " | ".join(heads) + " |",
        "|---|" + "---:|" * len(heads),
    ]
    for step in fused:
        cells = [cell((runs[key] or {}).get(step)) for key, _ in COLUMNS]
        cells.append(cell(compiled.get(step)))
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return lines


def conditions(folder: Path) -> list[str]:
    record = next(iter((load(folder, "latency_b1_fused") or {}).values()), None)
    text = folder.joinpath("machine.txt").read_text().splitlines()
    lines = [f"- machine: {'; '.join(line.strip() for line in text[1:] if line.strip())}"]
    if record:
        c = record["conditions"]
        lines.append(
            f"- {c['device_name']}, torch {c['torch_version']}, {c['dtype']}, "
            f"{c['img_size']} px, timer: {c['timer']}, measured {c['measured_at']}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    out = ["Latency in ms, median ± IQR:", ""]
    for batch in (1, 256):
        out += latency_table(args.folder, batch) + [""]
    out += conditions(args.folder)
    print("\n".join(out))


if __name__ == "__main__":
    main()
