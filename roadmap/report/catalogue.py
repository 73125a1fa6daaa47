"""What is installed, as tables: the roadmaps, a roadmap's steps with the paper's numbers, the
block kinds a spec may use, the data sources and the runtimes (``roadmap roadmaps``, ``roadmap
steps``, ``roadmap blocks``, ``roadmap sources``, ``roadmap runtimes``), and a roadmap's ends
against their references (``roadmap verify``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from roadmap.arch.blocks import BlockKind
from roadmap.arch.paper import PaperResult
from roadmap.arch.registry import Step
from roadmap.arch.roadmaps import PaperColumn, Roadmap
from roadmap.report.tables import fmt_num

if TYPE_CHECKING:  # torch loads only when a check is run, not for `roadmap steps`
    from roadmap.interop.reference import EndCheck
    from roadmap.measure.runtimes import Runtime
    from roadmap.train.sources import DataKind


def paper_columns(roadmap: Roadmap) -> list[tuple[PaperColumn, Callable[[PaperResult], Any]]]:
    """A roadmap's paper columns, each with how to read it from a paper result."""
    columns = [(roadmap.accuracy, lambda r: r.top1)]
    if roadmap.speed is not None:
        columns.append((roadmap.speed, lambda r: r.speed))
    if roadmap.cost is not None:
        columns.append((roadmap.cost, lambda r: r.cost))
    return columns


def steps_table(roadmap: Roadmap, steps: Sequence[Step]) -> Table:
    """A roadmap: one row per step with the paper's section and numbers (notes as footnotes)."""
    columns = paper_columns(roadmap)
    caption = "; ".join(f"{c.label}: {c.conditions}" for c, _ in columns)
    table = Table(
        title=f"The {roadmap.name} roadmap: {roadmap.title}",
        caption=f"{roadmap.citation}\n{caption}",
        caption_justify="left",
    )
    table.add_column("#", justify="right")
    table.add_column("step", no_wrap=True)
    table.add_column("§")
    for column, _ in columns:
        table.add_column(column.label, justify="right")
    table.add_column("change")
    notes = []
    for i, s in enumerate(steps):
        reported = s.paper or PaperResult()
        mark = ""
        if reported.note:
            notes.append(reported.note)
            mark = "*" * len(notes)
        values = [fmt_num(read(reported), 2 if c.unit != "%" else 1) for c, read in columns]
        values[0] += mark
        table.add_row(str(i), s.name, s.section, *values, s.title)
    if notes:
        table.caption += "\n" + "\n".join(f"{'*' * (i + 1)} {n}" for i, n in enumerate(notes))
    return table


def steps_data(steps: Sequence[Step]) -> list[dict]:
    """The roadmap as plain data (for ``--format json``)."""
    return [
        {
            "index": i,
            "name": s.name,
            "roadmap": s.roadmap,
            "section": s.section,
            "title": s.title,
            "paper_top1": (s.paper or PaperResult()).top1,
            "paper_speed": (s.paper or PaperResult()).speed,
            "paper_cost": (s.paper or PaperResult()).cost,
            "paper_note": (s.paper or PaperResult()).note,
        }
        for i, s in enumerate(steps)
    ]


def roadmaps_table(roadmaps: Sequence[Roadmap]) -> Table:
    """The installed roadmaps."""
    table = Table(title="Roadmaps", caption="roadmap steps --roadmap NAME lists one's steps")
    columns = ("roadmap", "from -> to", "steps", "family (--size)", "the paper measured", "paper")
    for name in columns:
        table.add_column(name, no_wrap=name == "roadmap")
    for row in roadmaps_data(roadmaps):
        measured = "; ".join(row["columns"])
        family = ", ".join(row["family"]) or "none"
        table.add_row(
            row["name"], row["title"], str(row["steps"]), family, measured, row["citation"]
        )
    return table


def roadmaps_data(roadmaps: Sequence[Roadmap]) -> list[dict]:
    """The installed roadmaps as plain data."""
    return [
        {
            "name": r.name,
            "title": r.title,
            "steps": len(r.order),
            "columns": [f"{c.label} ({c.conditions})" for c, _ in paper_columns(r)],
            "family": [s.label for s in r.family],
            "citation": r.citation,
        }
        for r in roadmaps
    ]


def block_kinds_table(kinds: Sequence[BlockKind]) -> Table:
    """The block kinds a spec may use: what each is, its own fields, its profiled parts."""
    table = Table(
        title="Block kinds",
        caption="own fields: BlockSpec.extra; --format json adds the common fields each reads",
        caption_justify="left",
    )
    for name in ("kind", "what it is", "own fields (default)", "parts, as profiled"):
        table.add_column(name, no_wrap=name == "kind")
    for row in block_kinds_data(kinds):
        own = "\n".join(f"{k} ({v})" for k, v in row["extra"].items()) or "—"
        parts = "\n".join(f"{k}: {v}" for k, v in row["parts"].items()) or "—"
        table.add_row(row["name"], row["title"], own, parts)
    return table


def block_kinds_data(kinds: Sequence[BlockKind]) -> list[dict]:
    """The block kinds as plain data (for ``--format json``)."""
    return [
        {
            "name": k.name,
            "title": k.title,
            "reads": list(k.reads),
            "extra": {name: default for name, (_, default) in k.extra.items()},
            "parts": dict(k.parts),
            "plain": k.plain,
        }
        for k in kinds
    ]


def reference_table(roadmap: Roadmap, ends: Sequence[EndCheck]) -> Table:
    """``roadmap verify``: each end of a roadmap beside its reference, and the verdict."""
    from roadmap.interop.reference import TOLERANCE

    sizes = sorted({end.check.img_size for end in ends}) or [64]
    pixels = " or ".join(f"{s}x{s}" for s in sizes)
    table = Table(
        title=f"The {roadmap.name} roadmap's ends against their references",
        caption="Random weights, copied layer by layer into ours (the reference's norms given "
        "random values and statistics first); parameters and layers before the classifier; "
        f"logits on 2 random {pixels} images (a reference that takes one resolution, as timm's "
        f"ViTs do, at that one), equal within {TOLERANCE:g} of the largest.",
        caption_justify="left",
    )
    for name in ("step", "reference", "params ours / ref", "layers ours / ref", "max |Δ logit|"):
        table.add_column(name, justify="left" if name in ("step", "reference") else "right")
    table.add_column("verdict")
    for end in ends:
        c = end.check
        diff = "-" if c.max_abs_diff is None else f"{c.max_abs_diff:.1e} of {c.scale:.2f}"
        verdict = "equal" if c.equal else f"DIFFERENT {c.difference}".strip()
        table.add_row(
            end.step,
            end.reference,
            f"{c.params[0]:,} / {c.params[1]:,}",
            f"{c.layers[0]} / {c.layers[1]}",
            diff,
            verdict,
        )
    return table


def reference_data(ends: Sequence[EndCheck]) -> list[dict]:
    """``roadmap verify --format json``."""
    return [
        {"step": e.step, "reference": e.reference, "equal": e.check.equal}
        | dataclasses.asdict(e.check)
        for e in ends
    ]


def sources_table(kinds: Sequence[DataKind]) -> Table:
    """The kinds of data source ``--data`` may name."""
    table = Table(title="Data sources", caption="--data NAME[:LOCATION]", caption_justify="left")
    for name in ("--data", "what it is", "loads in", "from"):
        table.add_column(name, no_wrap=name == "--data")
    for row in sources_data(kinds):
        where = "memory (no loader workers)" if row["in_memory"] else "loader workers"
        table.add_row(row["usage"], row["title"], where, row["module"])
    return table


def sources_data(kinds: Sequence[DataKind]) -> list[dict]:
    """The kinds of data source as plain data."""
    from roadmap.train.sources import SOURCES

    return [
        {
            "name": k.name,
            "usage": k.usage(),
            "title": k.title,
            "in_memory": k.in_memory,
            "synthetic": k.synthetic,
            "module": SOURCES.owner(k.name),
        }
        for k in kinds
    ]


def runtimes_table(found: Sequence[Runtime]) -> Table:
    """The runtimes: what each times and exports, where it runs, whether it is installed."""
    table = Table(
        title="Runtimes",
        caption="latency --backend NAME; export --format FORMAT",
        caption_justify="left",
    )
    for name in ("--backend", "--format", "what it is", "runs on", "int8", "installed"):
        table.add_column(name, no_wrap=name.startswith("--"))
    for row in runtimes_data(found):
        cells = (
            row["name"] if row["timed"] else "—",
            f"{row['format']} ({row['suffix']})" if row["format"] else "—",
            row["title"],
            ", ".join(row["devices"]) or "—",
            "yes" if row["int8"] else "",
            "yes" if row["installed"] is True else row["installed"],
        )
        table.add_row(*map(escape, cells))
    return table


def runtimes_data(found: Sequence[Runtime]) -> list[dict]:
    """The runtimes as plain data (``installed``: True, or the line saying how to install)."""
    from roadmap.errors import RoadmapError

    def installed(runtime: Runtime) -> bool | str:
        try:
            runtime.installed()
        except RoadmapError as e:
            return str(e)
        return True

    return [
        {
            "name": r.name,
            "timed": r.timer is not None,
            "format": r.format if r.exporter else None,
            "suffix": r.suffix,
            "title": r.title,
            "devices": list(r.devices),
            "int8": r.int8,
            "installed": installed(r),
        }
        for r in found
    ]
