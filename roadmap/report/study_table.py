"""Rendering a study (``roadmap table``, ``roadmap ablate``): one row per network with its
size, latency, accuracy, their Δs and noise marks, the paper's columns, int8's, and the lines
that say what is missing, busy, unreadable or underpowered; as rich, Markdown, LaTeX, CSV and
JSON.

Nothing here measures or builds; callers pass in what they computed.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from rich.table import Table
from rich.text import Text

from roadmap.measure.host import busy_note
from roadmap.report.tables import MACS_LEGEND, NOISE_MARK, fmt_num
from roadmap.study.comparison import Row, Study
from roadmap.study.stats import ALPHA, MAX_SEEDS_SHOWN, POWER, PairedDelta

# --- the study table (roadmap table / roadmap ablate) ------------------------------------

STUDY_NOISE_LEGEND = (
    f"{NOISE_MARK} = within noise: latency |Δ| below the pooled IQR; accuracy Δ not "
    f"significant in Welch's t-test over seeds at p < {ALPHA} (never with a single seed); "
    "top-1: mean [95 % CI, Student t] (seeds)"
)
# (metric key, column title, format of the value, format of a delta, scale applied to both)
STUDY_METRICS = (
    ("deploy_params", "params M (deploy)", "{:.2f}", "{:+.2f}", 1e-6),
    ("deploy_macs", "GMACs (deploy)", "{:.3f}", "{:+.3f}", 1e-9),
    ("latency_ms", "latency ms", "{:.2f}", "{:+.3g}", 1.0),
    ("top1", "top-1 %", "{:.1f}", "{:+.1f}", 1.0),
)


def _delta_cell(row: Row, key: str, which: str, fmt: str, scale: float) -> str:
    d = (row.vs_previous if which == "prev" else row.vs_baseline).get(key)
    if d is None:
        return ""
    return (NOISE_MARK if d.noise else "") + fmt.format(d.value * scale)


def ms(value: float) -> str:
    """Milliseconds with three significant digits (15.2, 1.12, 240)."""
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _value_cell(row: Row, key: str, fmt: str, scale: float) -> str:
    if row.counts is None:
        return "n/a"
    if key == "latency_ms" and row.latency is not None:
        return f"{ms(row.latency.median_ms)} [{ms(row.latency.iqr_ms)}]"
    if key == "top1" and row.accuracy is not None:
        a = row.accuracy
        if a.ci is None or a.ci.low is None:
            return f"{a.mean:.1f} ({a.n})"
        return f"{a.mean:.1f} [{a.ci.low:.1f}, {a.ci.high:.1f}] ({a.n})"
    if key == "top1" and row.unfinished:  # trained, not finished: say so, not "—"
        return row.unfinished[0].describe()
    value = row.metrics()[key]
    return "—" if value is None else fmt.format(value * scale)


def study_cells(row: Row) -> dict[str, str]:
    """Display strings for one row: each metric's value and its two deltas."""
    cells = {"name": row.variant.name}
    for key, _title, vfmt, dfmt, scale in STUDY_METRICS:
        cells[key] = _value_cell(row, key, vfmt, scale)
        cells[f"{key}_prev"] = _delta_cell(row, key, "prev", dfmt, scale)
        cells[f"{key}_base"] = _delta_cell(row, key, "base", dfmt, scale)
    cells["paper_top1"] = fmt_num(row.paper_top1)
    cells["paper_side"] = fmt_num(row.paper_side, 2)
    q = row.int8_latency
    cells["int8_ms"] = f"{ms(q.median_ms)} [{ms(q.iqr_ms)}]" if q else "—"
    cells["int8_delta"] = "—"
    if row.int8 is not None:
        cells["int8_delta"] = f"{paired_text(row.int8.delta)} ({len(row.int8.seeds)})"
    return cells


def paired_text(d: PairedDelta) -> str:
    """A paired Δ as tables print it: ``≈-0.04 [-0.25, +0.17]`` (≈ when not a finding)."""
    return f"{'' if d.finding else NOISE_MARK}{d.delta:+.2f} [{d.low:+.2f}, {d.high:+.2f}]"


def int8_columns(study: Study) -> dict[str, str]:
    """``table --int8``'s columns: cell key -> title."""
    if not study.int8:
        return {}
    return {"int8_ms": "int8 ms [IQR]", "int8_delta": "int8 Δ top-1 [95 %] (seeds)"}


def int8_lines(study: Study) -> list[str]:
    """What the int8 columns hold, and under which conditions."""
    if not study.int8:
        return []
    timed = next((r.int8_latency for r in study.rows if r.int8_latency), None)
    where = f"fused, {timed.conditions.short()}" if timed else "not timed (--no-latency)"
    lines = [
        f"int8: the ExecuTorch program (PT2E, XNNPACK quantizer; latency {where}); Δ top-1 = "
        "int8 - float32 deploy form on the same test images (roadmap eval --int8), seeds "
        "pooled, 95 % Wald interval for paired proportions; "
        f"{NOISE_MARK} = McNemar p ≥ {ALPHA}"
    ]
    if not any(r.int8 for r in study.rows):
        lines.append(
            "int8 Δ top-1 is empty: the store holds no int8 scores for these networks; "
            "`roadmap eval --int8 --checkpoint RUN/last.pt` scores a trained run's program"
        )
    return lines


def latency_header(study: Study) -> str:
    """'latency ms [IQR] (fused, <device>, 2 threads, batch 1, 224 px)' from the conditions
    (the backend named when it is not eager torch)."""
    c = study.conditions
    if c is None:
        return "latency (not measured)"
    busy = "; BUSY MACHINE: expect noise" if c.busy else ""
    backend = "" if c.backend == "eager" else f"{c.backend}, "
    return f"latency ms [IQR] (fused, {backend}{c.short()}{busy})"


def study_table(study: Study, title: str, paper: bool = True) -> Table:
    """Rich table: each metric cell shows the value, then "Δ previous | baseline"."""
    legend = "Δ prev | base: against the row above | against the baseline (first row or --baseline)"
    table = Table(
        title=title,
        caption_justify="left",
        caption="\n".join(
            [latency_header(study), *agreement_lines(study), legend, STUDY_NOISE_LEGEND]
            + [MACS_LEGEND, *int8_lines(study), *power_lines(study)]
            + [line for line in [missing_results_text(study)] if line]
        ),
    )
    table.add_column("step", no_wrap=True)
    titles = {"latency_ms": "latency ms [IQR]", "top1": "top-1 % [95% CI] (n)"}
    for key, col_title, *_ in STUDY_METRICS:
        header = f"{titles.get(key, col_title)}\n[dim]Δ prev | base[/]"
        table.add_column(header, justify="right", no_wrap=True)
    columns = extra_columns(study, paper)
    for column_title in columns.values():
        table.add_column(column_title.replace(" ", "\n", 1), justify="right")
    for row in study.rows:
        c = study_cells(row)
        cells = [c["name"]]
        for key, *_ in STUDY_METRICS:
            deltas = " | ".join(x for x in (c[f"{key}_prev"], c[f"{key}_base"]) if x)
            cells.append(c[key] + (f"\n[dim]{deltas}[/]" if deltas else ""))
        table.add_row(*cells, *(c[key] for key in columns))
    return table


def extra_columns(study: Study, paper: bool) -> dict[str, str]:
    """The columns after the metrics: int8's (``--int8``), then the paper's (``--paper``)."""
    return int8_columns(study) | (paper_columns(study) if paper else {})


def paper_columns(study: Study) -> dict[str, str]:
    """The paper's columns: cell key -> title (its top-1, then its speed or cost, where the
    roadmap has one: ``ms`` for RepViT, ``GFLOPs`` for ConvNeXt, none for a roadmap whose paper
    gives accuracy alone)."""
    side = study.roadmap.side if study.roadmap else None
    return {"paper_top1": "paper top-1 %"} | ({"paper_side": f"paper {side.unit}"} if side else {})


def _flat_header(study: Study, paper: bool) -> list[str]:
    cols = ["step"]
    for _key, col_title, *_ in STUDY_METRICS:
        cols += [col_title, "Δ prev", "Δ base"]
    return cols + list(extra_columns(study, paper).values())


def _flat_cells(study: Study, row: Row, paper: bool) -> list[str]:
    c = study_cells(row)
    cells = [c["name"]]
    for key, *_ in STUDY_METRICS:
        cells += [c[key], c[f"{key}_prev"], c[f"{key}_base"]]
    return cells + [c[key] for key in extra_columns(study, paper)]


def study_markdown(study: Study, title: str, paper: bool = True) -> str:
    """A GitHub Markdown table with its conditions and legends underneath."""
    header = _flat_header(study, paper)
    lines = [
        f"**{title}**",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for row in study.rows:
        cells = [x.replace("|", "\\|") for x in _flat_cells(study, row, paper)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"{latency_header(study)}. {STUDY_NOISE_LEGEND}. {MACS_LEGEND}."]
    lines += agreement_lines(study) + int8_lines(study) + power_lines(study)
    return "\n".join(lines)


def study_latex(study: Study, title: str, paper: bool = True) -> str:
    """A booktabs LaTeX table."""
    header = _flat_header(study, paper)

    def esc(text: str) -> str:
        for a, b in (
            ("%", r"\%"),
            ("_", r"\_"),
            ("±", r"$\pm$"),
            ("Δ", r"$\Delta$"),
            ("≈", r"$\approx$"),
            ("—", "--"),
        ):
            text = text.replace(a, b)
        return text

    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
        r"\toprule",
        " & ".join(esc(h) for h in header) + r" \\",
        r"\midrule",
    ]
    rows = (_flat_cells(study, row, paper) for row in study.rows)
    lines += [" & ".join(esc(x) for x in cells) + r" \\" for cells in rows]
    lines += [
        r"\bottomrule",
        r"\end{tabular}",
        rf"\caption{{{esc(title)}. {esc(latency_header(study))}. {esc(STUDY_NOISE_LEGEND)}."
        + "".join(f" {esc(line)}." for line in int8_lines(study))
        + "}",
        r"\end{table}",
    ]
    return "\n".join(lines)


def agreement_lines(study: Study) -> list[str]:
    """The agreement of our latency and top-1 changes with the paper's, where the rows allow."""
    found = (study.agreement, study.accuracy_agreement)
    return [a.describe() for a in found if a is not None]


def power_lines(study: Study) -> list[str]:
    """What to run next: the accuracy Δs against the row above that are not findings yet, and
    about how many seeds per network a test would need to settle each (``roadmap.study.stats``)."""
    if not study.pending:
        return []
    parts = [
        f"{p.name} {p.delta:+.1f}: ~"
        f"{p.seeds_needed if p.seeds_needed <= MAX_SEEDS_SHOWN else f'>{MAX_SEEDS_SHOWN}'} seeds"
        for p in study.pending
    ]
    return [
        f"Not yet findings (Δ vs the row above), seeds per network a test at p < {ALPHA} with "
        f"{POWER:.0%} power would need: " + "; ".join(parts)
    ]


def unbuildable_text(study: Study) -> Text | None:
    """Which variants could not be built, and why."""
    bad = [r.variant for r in study.rows if not r.variant.buildable]
    if not bad:
        return None
    text = Text("cannot be built:\n", style="bold")
    for v in bad:
        text.append(f"  {v.name}: {v.reason}\n", style="red")
    return text


def study_json(study: Study, title: str) -> str:
    """The rows as one JSON document, with the latency conditions they were measured under."""
    c, a, acc = study.conditions, study.agreement, study.accuracy_agreement
    return json.dumps(
        {
            "title": title,
            "environment": c.to_dict() if c else None,
            "paper_agreement": a.to_dict() if a else None,
            "paper_accuracy_agreement": acc.to_dict() if acc else None,
            "rows": [row_data(r) for r in study.rows],
        },
        indent=2,
    )


def study_csv(study: Study) -> str:
    """The rows as CSV (lists joined by commas); columns in first-seen order."""
    records = [row_data(r) for r in study.rows]
    buffer = io.StringIO()
    columns = list(dict.fromkeys(key for rec in records for key in rec))  # first row: no deltas
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for rec in records:
        writer.writerow({k: ",".join(v) if isinstance(v, list) else v for k, v in rec.items()})
    return buffer.getvalue().rstrip("\n")


def stale_lines(study: Study) -> list[str]:
    """Records the store holds for these networks that were trained on another spec."""
    shown = study.stale[:MAX_UNREADABLE_SHOWN]
    more = len(study.stale) - len(shown)
    return shown + ([f"... and {more} more such records"] if more > 0 else [])


def missing_results_text(study: Study) -> str | None:
    """When rows have no accuracy under the labels asked for: what the store holds for those
    networks instead, and how to show it (an override such as ``--epochs`` files a run under a
    new label, ``fashion-1a2b3c4d5e6f``)."""
    if study.source is None or not study.elsewhere:
        return None
    root, data, recipe = study.source
    missing = sum(1 for r in study.rows if r.accuracy is None and r.variant.buildable)
    which = "these networks" if missing == len(study.rows) else f"{missing} of these networks"
    listing = ", ".join(
        f"{d}/{r} ({n} network{'s' * (n > 1)})" for (d, r), n in study.elsewhere.items()
    )
    (d, r), _ = max(study.elsewhere.items(), key=lambda item: item[1])
    return (
        f"no trained results for {which} under {data}/{recipe} in {root}/; it holds them under "
        f"{listing}. Show them with: roadmap table --data {_data_option(d)} --recipe {r}"
    )


MAX_UNREADABLE_SHOWN = 10


def unfinished_lines(study: Study) -> list[str]:
    """One line per run of these networks that stopped before its record (resume them with
    ``roadmap run`` again, or ``roadmap train ... --resume``)."""
    return [
        f"{u.key.name} seed {u.key.seed}: {u.describe()}"
        for row in study.rows
        for u in row.unfinished
    ]


def unreadable_lines(study: Study) -> list[str]:
    """One line per record that could not be read (its path and why), at most ten and a
    count: the table still shows every other record."""
    lines = [f"skipped {line}" for line in study.unreadable[:MAX_UNREADABLE_SHOWN]]
    more = len(study.unreadable) - MAX_UNREADABLE_SHOWN
    if more > 0:
        lines.append(f"... and {more} more unreadable record(s)")
    return lines


def busy_text(study: Study) -> str | None:
    """A warning when other work kept the machine busy while the rows' latency was timed."""
    c = study.conditions
    if c is None or not c.busy:
        return None
    return (
        f"warning: the machine was busy while timing ({busy_note(c.contention)}); "
        "latencies are inflated and their IQRs wide: rerun on an idle machine"
    )


def _data_option(slug: str) -> str:
    """The --data value for a store's data name (folders are hashed: the user knows the path)."""
    return "imagefolder:PATH" if slug.startswith("imagefolder-") else slug.replace("-", ":", 1)


def row_data(row: Row) -> dict[str, Any]:
    """One row as plain data with timm-compatible names where they exist."""
    c, lat, acc = row.counts, row.latency, row.accuracy
    data: dict[str, Any] = {
        "name": row.variant.name,
        "steps": list(row.variant.selection.steps),
        "buildable": row.variant.buildable,
        "reason": row.variant.reason or None,
        "param_count": c.params if c else None,
        "deploy_param_count": c.deploy_params if c else None,
        "infer_gmacs": round(c.deploy_macs / 1e9, 4) if c else None,
        "infer_step_time": lat.median_ms if lat else None,
        "infer_step_time_iqr": lat.iqr_ms if lat else None,
        "top1": acc.mean if acc else None,
        "top1_std": acc.std if acc else None,
        "top1_ci95_low": acc.ci.low if acc and acc.ci else None,
        "top1_ci95_high": acc.ci.high if acc and acc.ci else None,
        "top1_n": acc.n if acc else None,
        "paper_top1": row.paper_top1,
        "paper_speed": row.paper_speed,
        "paper_cost": row.paper.cost if row.paper else None,
        "unfinished": [f"seed {u.key.seed}: {u.describe()}" for u in row.unfinished],
    }
    if row.int8_latency is not None or row.int8 is not None:
        q, d = row.int8_latency, row.int8.delta if row.int8 else None
        data |= {
            "int8_step_time": q.median_ms if q else None,
            "int8_step_time_iqr": q.iqr_ms if q else None,
            "int8_top1": row.int8.top1 if row.int8 else None,
            "int8_delta_top1": d.delta if d else None,
            "int8_delta_ci95_low": d.low if d else None,
            "int8_delta_ci95_high": d.high if d else None,
            "int8_delta_p_value": d.p_value if d else None,
            "int8_images": d.images if d else None,
        }
    for prefix, ds in (("delta_prev", row.vs_previous), ("delta_base", row.vs_baseline)):
        for key, d in ds.items():
            data[f"{prefix}_{key}"] = d.value
            data[f"{prefix}_{key}_noise"] = d.noise
            if key == "top1":
                data[f"{prefix}_{key}_p_value"] = d.p_value
                data[f"{prefix}_{key}_seeds_needed"] = d.seeds_needed
    return data
