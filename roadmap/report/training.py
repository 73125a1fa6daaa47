"""Rendering of training runs, sweeps, evaluations and cluster plans (rich tables, lines).

Nothing here trains or measures; the CLI passes in what the library returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from roadmap.arch.roadmaps import split_name
from roadmap.report.study_table import _data_option, paired_text
from roadmap.report.tables import NOISE_MARK, fmt_num
from roadmap.results.record import Int8Scores, RunRecord
from roadmap.results.store import RunKey
from roadmap.study import stats
from roadmap.study.plan import PlannedRun
from roadmap.study.runs import Outcome
from roadmap.train.evaluate import CheckpointScores
from roadmap.train.recipe import LR_REFERENCE_BATCH, Recipe


def record_table(record: RunRecord) -> Table:
    """A finished run's record as a two-column table."""
    r = record
    table = Table(
        title=f"{r.name} on {r.data}, recipe {r.recipe}, seed {r.seed}", show_header=False
    )
    table.add_column("", style="bold")
    table.add_column("")
    rows = [
        ("top-1 / top-5 (final)", f"{r.top1:.2f} / {r.top5:.2f} %"),
        ("top-1 best (epoch)", f"{r.best_top1:.2f} % ({r.best_epoch})"),
        ("fused top-1 / top-5", f"{r.fused_top1:.2f} / {r.fused_top5:.2f} %"),
        ("params train / fused", f"{r.params:,} / {r.deploy_params:,}"),
        ("MACs train / fused", f"{r.macs:,} / {r.deploy_macs:,} at {r.img_size} px"),
        ("train time", f"{r.train_time_s:.1f} s, {r.images_per_s:,.0f} img/s"),
        (
            "learning rate",
            f"peak {r.lr.peak_lr:.3g} = base {r.lr.base_lr:g} x global batch "
            f"{r.lr.global_batch} / {LR_REFERENCE_BATCH}",
        ),
    ]
    if r.ema_top1 is not None:
        rows.insert(1, ("EMA top-1 / top-5", f"{r.ema_top1:.2f} / {r.ema_top5:.2f} %"))
    if r.synthetic:
        rows.insert(0, ("data", "SYNTHETIC: throughput only, accuracy means nothing"))
    if r.skipped_images:
        named = "\n".join((r.skipped_files or [])[:5])
        rows.append(("skipped images", f"{r.skipped_images:,}" + (f"\n{named}" if named else "")))
    for row in rows:
        table.add_row(*row)
    return table


def stored_text(record: RunRecord, root: Path) -> str:
    """Where a run was filed, and the command that shows it beside the others."""
    folder = RunKey(record.data, record.recipe, record.name, record.seed).folder(root)
    data = "" if record.data == "digits" else f" --data {_data_option(record.data)}"
    road = split_name(record.name)[0].option()
    return (
        f"stored in {folder} (recipe label {record.recipe}); compare it with: roadmap table"
        f"{road}{data} --recipe {record.recipe}"
        + (f" --results {root}" if Path(root) != Path("results") else "")
    )


def sweep_table(outcomes: Sequence[Outcome]) -> Table:
    """One row per (network, seed) of a sweep: what happened and the top-1."""
    table = Table(title="sweep")
    for column in ("network", "seed", "status", "top-1 %", "fused top-1 %"):
        table.add_column(column, justify="right" if "%" in column or column == "seed" else "left")
    for o in outcomes:
        top1 = fmt_num(o.record.top1, 2) if o.record else "—"
        fused = fmt_num(o.record.fused_top1, 2) if o.record else "—"
        table.add_row(o.name, str(o.seed), o.status, top1, fused)
    return table


def eval_table(scores: CheckpointScores) -> Table:
    """Accuracy of the training form beside the fused deploy form."""
    table = Table(title=f"{scores.name} ({scores.weights} weights, {scores.images} images)")
    for column in ("form", "top-1 %", "top-5 %"):
        table.add_column(column, justify="left" if column == "form" else "right")
    table.add_row("training", f"{scores.top1:.2f}", f"{scores.top5:.2f}")
    table.add_row("fused", f"{scores.fused_top1:.2f}", f"{scores.fused_top5:.2f}")
    table.caption = f"top-1 class differs on {scores.fused_disagreements} images"
    return table


def int8_summary(scores: Int8Scores) -> dict[str, Any]:
    """The Δ of an int8 program against its float32 form, with its interval and test."""
    d = stats.paired_delta(scores.lost, scores.gained, scores.images)
    return {"delta": d.delta, "ci95": [d.low, d.high], "p_value": d.p_value, "finding": d.finding}


def int8_table(scores: Int8Scores) -> Table:
    """The int8 program beside the float32 deploy form, on the same images."""
    d = stats.paired_delta(scores.lost, scores.gained, scores.images)
    table = Table(title=f"{scores.name}: int8 program vs float32 ({scores.images} images)")
    for column in ("form", "top-1 %", "Δ top-1 (95 % interval)", "McNemar p"):
        table.add_column(column, justify="left" if column == "form" else "right")
    table.add_row("float32 (fused, torch)", f"{scores.float_top1:.2f}", "", "")
    table.add_row(
        "int8 (ExecuTorch)", f"{scores.int8_top1:.2f}", paired_text(d), f"{d.p_value:.2g}"
    )
    table.caption = (
        f"{scores.lost} images lost, {scores.gained} gained; same top-1 class on "
        f"{scores.agreement:.2f} %; logits SQNR {scores.sqnr_db:.1f} dB; calibrated on "
        f"{scores.calibration_images} training images; {scores.quantization}; {scores.runtime}, "
        f"{scores.threads} threads. {NOISE_MARK}: not a finding (McNemar p ≥ {stats.ALPHA:g})"
    )
    return table


def plan_table(
    plan: Sequence[PlannedRun], part: tuple[int, int] | None, states: Sequence[Any] | None
) -> Table:
    """The plan: each run, its shard (with --shard K/N: the runs of shard K marked), its state."""
    n = part[1] if part else None
    title = f"plan: {len(plan)} runs" + (f" in {n} shards" if n else "")
    table = Table(title=title)
    for column in (
        "#",
        "network",
        "seed",
        *(["shard"] if n else []),
        *(["state", ""] if states else []),
    ):
        table.add_column(column, justify="right" if column in ("#", "seed", "shard") else "left")
    for i, run in enumerate(plan):
        cells = [str(run.index), run.network.name, str(run.seed)]
        if n:
            mine = "*" if run.index % n == part[0] else ""
            cells.append(f"{run.index % n}{mine}")
        if states:
            cells += [states[i].state, states[i].detail]
        table.add_row(*cells)
    if n:
        table.caption = f"* = trained by --shard {part[0]}/{n}"
    if states:
        counts = {}
        for st in states:
            counts[st.state] = counts.get(st.state, 0) + 1
        summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        table.caption = (table.caption + "; " if table.caption else "") + summary
    return table


def jobs_text(jobs: Sequence[Any], cluster: Any) -> Text:
    """What was submitted and how to follow it."""
    ids = [str(job.job_id) for job in jobs]
    text = Text(f"submitted {len(jobs)} {cluster.launcher} job(s): {', '.join(ids[:8])}")
    if len(ids) > 8:
        text.append(f" ... ({len(ids) - 8} more)")
    text.append(f"\nlogs and job files: {cluster.jobs_dir}/")
    if cluster.launcher == "slurm":
        text.append(
            f"\nfollow them: squeue -j {','.join(sorted({i.split('_')[0] for i in ids}))}; "
        )
        text.append("then roadmap run ... --status (the same options) for each run's state")
    return text


def job_outcomes_table(outcomes: Sequence[dict]) -> Table:
    """One row per finished job."""
    table = Table(title="jobs")
    for column in ("network", "seed", "status", "top-1 %"):
        table.add_column(column, justify="right" if column in ("seed", "top-1 %") else "left")
    for o in outcomes:
        table.add_row(o["name"], str(o["seed"]), o["status"], fmt_num(o["top1"], 2))
    return table


def recipes_table(recipes: Sequence[Recipe]) -> Table:
    """``roadmap recipes``: one row per key, one column per shipped recipe."""
    table = Table(
        title="Shipped recipes (--recipe NAME; change any key with --set KEY=VALUE)",
        caption="lr = base_lr x global batch / 512; batch_size is the global batch",
        caption_justify="left",
    )
    table.add_column("key", no_wrap=True)
    for recipe in recipes:
        table.add_column(recipe.name, justify="right")
    rows = [r.to_dict() for r in recipes]
    for key in rows[0]:
        if key != "name":
            table.add_row(key, *(_recipe_value(row[key]) for row in rows))
    return table


def _recipe_value(value: Any) -> str:
    if value is None:
        return "-"
    return str(value) if not isinstance(value, float) else f"{value:g}"
