"""The roadmap as one figure: the paper's trajectory, ours, and what each step changed.

Three kinds of panel, side by side on a 16:9 slide:

1. **Paper**: the paper's latency (x) against its top-1 (y), one point
   per step that has both numbers, arrows from each step to the next (the roadmap's own
   columns: RepViT's paper gives iPhone 12 ms; a paper with no speed column gets its top-1 alone).
2. **Ours**: our measured latency of the fused model (x, median with the interquartile range
   as error bars) against our top-1 (mean and 95 % CI over seeds). Before anything is trained there
   is no accuracy, so y becomes the deploy MACs instead: the panel then shows that MACs and
   latency do not move together, which is the paper's reason for measuring latency at all.
3. **Δ per step** (:mod:`roadmap.report.plot_bars`): each step's change in latency against the
   step before, ours beside the paper's, in percent so that CPU milliseconds and iPhone
   milliseconds compare; a second panel does the same for top-1 (in points) when we have
   accuracy. A change within the noise (:mod:`roadmap.study.comparison`'s rules) is drawn
   hatched and grey.

Points carry their row number; the Δ panel's axis lists every number with its step name, so it
is also the key. Nothing is drawn that was not measured here or printed in the paper.

The figure is built on a bare :class:`matplotlib.figure.Figure` (no pyplot, so no global
figure state survives a call) and written atomically.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from roadmap.arch.roadmaps import Roadmap
from roadmap.errors import RoadmapError
from roadmap.measure import host
from roadmap.measure.conditions import Conditions
from roadmap.report.plot_bars import (
    OURS,
    PAPER,
    bar_legend,
    ci_err,
    latency_bar,
    latency_bars,
    top1_bar,
    top1_bars,
)
from roadmap.report.trajectory import trajectory
from roadmap.study.comparison import Row, Study
from roadmap.util import files

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
# 16:9 at 110 dpi is a 1760x990 slide; the PNG stays well under 300 KB.
FIGSIZE = (16.0, 9.0)
DPI = 110
CONDITIONS_WIDTH = 185  # characters of the conditions line at 11 pt across the 16-inch figure
# Colours of the two sources, the same in every panel (matplotlib's default blue and orange).
RC = {
    "font.size": 12,  # at 16x9 in on a projector, 12 pt is the smallest comfortable size
    "axes.titlesize": 13,
    "axes.labelsize": 12,
    "xtick.labelsize": 11,
    "ytick.labelsize": 11,
    "legend.fontsize": 10.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def default_title(roadmap: Roadmap) -> str:
    """The figure's title for a roadmap."""
    way = roadmap.title.replace(" -> ", " → ")
    return f"The {roadmap.display} roadmap: {way}, one step at a time"


def check_out(out: Path) -> str:
    """The matplotlib format for ``out``'s suffix; raises :class:`RoadmapError` for others."""
    fmt = FORMATS.get(Path(out).suffix.lower())
    if fmt is None:
        raise RoadmapError(
            f"cannot tell the figure format from {str(out)!r}; name it .png, .svg or .pdf"
        )
    return fmt


def plot_study(
    study: Study,
    out: Path,
    *,
    title: str | None = None,
    accuracy_on: str | None = None,
) -> Path:
    """Draw the roadmap figure for a study and write it to ``out`` (atomically).

    Args:
        study: the measured networks (``roadmap.study.comparison.collect``), in roadmap order.
        out: the file to write; its suffix (.png, .svg, .pdf) picks the format.
        title: the figure's title (default: the roadmap's).
        accuracy_on: what our top-1 was measured on (e.g. ``digits, recipe quick``), for labels.

    Returns:
        ``out``.
    """
    fmt = check_out(out)
    fig = figure(study, title=title, accuracy_on=accuracy_on)
    with matplotlib.rc_context(RC):
        _save(fig, Path(out), fmt)
    return Path(out)


# --- layout -------------------------------------------------------------------------------


def figure(study: Study, *, title: str | None = None, accuracy_on: str | None = None) -> Figure:
    """The roadmap figure for a study, not yet written anywhere (arguments as in plot_study)."""
    if not study.rows:
        raise RoadmapError("nothing to plot: no rows; pick steps with --upto/--steps/--skip")
    with matplotlib.rc_context(RC):
        return _figure(study, title or default_title(study.roadmap), accuracy_on)


def _figure(study: Study, title: str, accuracy_on: str | None) -> Figure:
    rows = study.rows
    fig = Figure(figsize=FIGSIZE)
    FigureCanvasAgg(fig)  # a renderer to measure label boxes with (see _place_labels)
    with_acc = any(r.accuracy is not None for r in rows)
    scatter, bar_axes = _axes(fig, with_acc)
    notes: list[str] = []
    notes += _paper_panel(scatter[0], rows, study.roadmap)
    notes += _ours_panel(scatter[1], rows, accuracy_on) + _busy_note(study.conditions)
    bars = [latency_bar(rows, i) for i in range(len(rows))]
    notes += latency_bars(bar_axes[0], study, bars, alone=not with_acc)
    if with_acc:
        top1 = [top1_bar(rows, i) for i in range(len(rows))]
        notes += top1_bars(bar_axes[1], study, top1)
        bars += top1
    bar_legend(bar_axes, bars)
    fig.suptitle(title, x=0.02, y=0.98, ha="left", fontsize=17, fontweight="bold")
    line = _conditions_line(study.conditions, study.roadmap)
    fig.text(0.02, 0.93, line, ha="left", va="top", fontsize=11)
    footnotes = "\n".join(f"• {n}" for n in notes)
    fig.text(0.02, 0.015, footnotes, ha="left", va="bottom", fontsize=10.5)
    return fig


def _axes(fig: Figure, with_acc: bool) -> tuple[list[Axes], list[Axes]]:
    """Two scatter panels on the left, one or two Δ bar panels (sharing rows) on the right.

    Fixed margins, not constrained layout: labels are placed in pixels once the axes have their
    final size. The gap before the bars holds their step names (the figure's key).
    """
    split = 0.56 if with_acc else 0.62  # figure fraction where the scatter panels end
    box = {"top": 0.82, "bottom": 0.27}
    left = fig.add_gridspec(1, 2, left=0.05, right=split, wspace=0.28, **box)
    right = fig.add_gridspec(
        1, 2 if with_acc else 1, left=split + 0.14, right=0.985, wspace=0.12, **box
    )
    scatter = [fig.add_subplot(left[0]), fig.add_subplot(left[1])]
    bars = [fig.add_subplot(right[0])]
    if with_acc:
        bars.append(fig.add_subplot(right[1], sharey=bars[0]))
        bars[1].tick_params(labelleft=False)
    return scatter, bars


def _save(fig: Figure, out: Path, fmt: str) -> None:
    """Write atomically (``roadmap.util.files``): a reader never sees half a figure."""
    with files.atomic_path(out) as tmp:
        fig.savefig(tmp, format=fmt, dpi=DPI, metadata=_metadata(fmt), **_extra(fmt))


def _extra(fmt: str) -> dict[str, Any]:
    """Pillow's PNG optimizer: same pixels, smaller file."""
    return {"pil_kwargs": {"optimize": True}} if fmt == "png" else {}


def _metadata(fmt: str) -> dict[str, Any]:
    """No creation date in SVG/PDF, so the same numbers give the same file."""
    return {"Date": None} if fmt in ("svg", "pdf") else {}


# --- panel 1: the paper -------------------------------------------------------------------


def _paper_panel(ax: Axes, rows: list[Row], roadmap: Roadmap) -> list[str]:
    """The paper's speed (or, where it reports none per step, its compute cost) vs its top-1;
    returns footnotes on the steps it leaves out."""
    idx = [i for i, r in enumerate(rows) if r.paper_side and r.paper_top1 is not None]
    if roadmap.side is None:  # a paper that reports accuracy alone per step (RepVGG's ablation)
        return _paper_top1_panel(ax, rows, roadmap)
    if roadmap.speed is not None:  # RepViT's: iPhone latency
        ax.set_title("Paper: iPhone 12 (Core ML), ImageNet-1K", loc="left", fontweight="bold")
        ax.set_xlabel("latency on iPhone 12 (ms, as reported)")
    else:
        side = roadmap.side
        ax.set_title("Paper: its compute and its top-1", loc="left", fontweight="bold")
        ax.set_xlabel(f"{side.unit} ({side.conditions})" if side else "")
    ax.set_ylabel(f"top-1 (%), {roadmap.accuracy.conditions.split(',')[0]}")
    ax.grid(alpha=0.3)
    if not idx:
        _empty(ax, "the paper reports no numbers\nfor these rows (ablations)")
        return []
    xs = [rows[i].paper_side for i in idx]
    ys = [rows[i].paper_top1 for i in idx]
    trajectory(ax, idx, xs, ys, PAPER)
    return _paper_notes(rows, idx)


def _paper_top1_panel(ax: Axes, rows: list[Row], roadmap: Roadmap) -> list[str]:
    """The paper's top-1 after each step, for a paper with no speed or compute per step."""
    idx = [i for i, r in enumerate(rows) if r.paper_top1 is not None]
    ax.set_title("Paper: top-1 after each step", loc="left", fontweight="bold")
    ax.set_xlabel("step (no speed or compute per step in the paper)")
    ax.set_ylabel(f"top-1 (%), {roadmap.accuracy.conditions.split(',')[0]}")
    ax.grid(alpha=0.3)
    if not idx:
        _empty(ax, "the paper reports no numbers\nfor these rows (ablations)")
        return []
    ax.set_xticks(idx)
    trajectory(ax, idx, [float(i) for i in idx], [rows[i].paper_top1 for i in idx], PAPER)
    return _paper_notes(rows, idx)


def _paper_notes(rows: list[Row], shown: list[int]) -> list[str]:
    notes = []
    for i, row in enumerate(rows):
        note = _paper_note(row)
        paper_row = row.paper_side is not None or row.paper_top1 is not None
        if i not in shown and (paper_row or note):
            why = note or "the paper gives only one of the two numbers"
            notes.append(f"Paper panel leaves out {i} {row.variant.name}: {why}.")
        elif i in shown and note:
            notes.append(f"Paper panel, point {i} ({row.variant.name}): {note}.")
    if len(shown) > 1 and shown != list(range(shown[0], shown[-1] + 1)):
        notes.append("Arrows join the nearest steps the paper gives both numbers for.")
    return notes


def _is_prefix(row: Row) -> bool:
    return row.variant.buildable and row.variant.selection.is_roadmap_prefix


def _paper_note(row: Row) -> str:
    return row.paper.note if row.paper else ""  # an ablation row: none, by design


# --- panel 2: ours ------------------------------------------------------------------------


def _ours_panel(ax: Axes, rows: list[Row], accuracy_on: str | None) -> list[str]:
    """Our latency vs our top-1 (or vs deploy MACs before any training); returns footnotes."""
    ax.grid(alpha=0.3)
    timed = [i for i, r in enumerate(rows) if r.latency is not None]
    if not timed:
        return _ours_sizes(ax, rows)
    ax.set_xlabel(_latency_label(rows, timed))
    if any(r.accuracy is not None for r in rows):
        return _ours_top1(ax, rows, timed, accuracy_on)
    return _ours_macs(ax, rows, timed)


def _ours_top1(ax: Axes, rows: list[Row], timed: list[int], on: str | None) -> list[str]:
    idx = [i for i in timed if rows[i].accuracy is not None]
    ax.set_title("Ours: fused-model latency vs top-1", loc="left", fontweight="bold")
    ax.set_ylabel(f"top-1 (%){f' on {on}' if on else ''}, mean and 95% CI")
    xs = [rows[i].latency.median_ms for i in idx]
    ys = [rows[i].accuracy.mean for i in idx]
    ax.errorbar(
        xs,
        ys,
        xerr=_iqr_err(rows, idx),
        yerr=ci_err(rows, idx),
        fmt="none",
        ecolor=OURS,
        alpha=0.45,
        lw=1.2,
        capsize=3,
    )
    trajectory(ax, idx, xs, ys, OURS)
    seeds = sorted({rows[i].accuracy.n for i in idx})
    notes = [
        f"Ours: top-1 over {'/'.join(map(str, seeds))} seed(s) per step; "
        "not comparable with the paper's ImageNet numbers (other data, shorter recipe)."
    ]
    missing = [f"{i} {rows[i].variant.name}" for i in timed if rows[i].accuracy is None]
    if missing:
        notes.append(f"Ours panel leaves out (no recorded run): {', '.join(missing)}.")
    return notes


def _ours_macs(ax: Axes, rows: list[Row], timed: list[int]) -> list[str]:
    ax.set_title("Ours: MACs ≠ latency (nothing trained yet)", loc="left", fontweight="bold")
    ax.set_ylabel("deploy MACs (G), counted at batch 1")
    idx = [i for i in timed if rows[i].counts is not None]
    xs = [rows[i].latency.median_ms for i in idx]
    ys = [rows[i].counts.deploy_macs / 1e9 for i in idx]
    ax.errorbar(
        xs, ys, xerr=_iqr_err(rows, idx), fmt="none", ecolor=OURS, alpha=0.45, lw=1.2, capsize=3
    )
    trajectory(ax, idx, xs, ys, OURS)
    return [
        "Ours panel: no accuracy is recorded yet (train with `roadmap run`), so it plots "
        "MACs: a step can add MACs and still get faster, or the reverse."
    ]


def _ours_sizes(ax: Axes, rows: list[Row]) -> list[str]:
    """Without latency: deploy MACs against our top-1 (or, before training, deploy params)."""
    counted = [i for i, r in enumerate(rows) if r.counts is not None]
    trained = [i for i in counted if rows[i].accuracy is not None]
    idx = trained or counted
    if not idx:
        ax.set_title("Ours", loc="left", fontweight="bold")
        _empty(ax, "nothing measured")
        return []
    xs = [rows[i].counts.deploy_macs / 1e9 for i in idx]
    ax.set_xlabel("deploy MACs (G), counted at batch 1")
    if trained:
        ys = [rows[i].accuracy.mean for i in idx]
        ax.set_title("Ours: deploy MACs vs top-1", loc="left", fontweight="bold")
        ax.set_ylabel("top-1 (%), mean over seeds")
    else:
        ys = [rows[i].counts.deploy_params / 1e6 for i in idx]
        ax.set_title("Ours: deploy MACs vs params", loc="left", fontweight="bold")
        ax.set_ylabel("deploy params (M)")
    trajectory(ax, idx, xs, ys, OURS)
    return [
        "Latency was not measured (--no-latency): the ours panel plots sizes, and the Δ "
        "latency panel shows the paper's bars only."
    ]


def _busy_note(c: Conditions | None) -> list[str]:
    """A warning when other work competed for the machine while we timed (the one rule)."""
    if c is None or not c.busy:
        return []
    return [
        f"The machine was busy while we timed ({host.busy_note(c.contention)}): "
        "our latencies are inflated and their IQRs wide; rerun `roadmap plot` on an idle machine."
    ]


def _iqr_err(rows: list[Row], idx: list[int]) -> list[list[float]]:
    """Asymmetric x error bars from the 25th to the 75th percentile."""
    lats = [rows[i].latency for i in idx]
    return [[r.median_ms - r.p25_ms for r in lats], [r.p75_ms - r.median_ms for r in lats]]


def _latency_label(rows: list[Row], timed: list[int]) -> str:
    if not timed:
        return "our latency (ms)"
    c = rows[timed[0]].latency.conditions
    return (
        f"our latency, fused model (ms, median; bars: IQR)\n"
        f"{_short_device(c)}, batch {c.batch}, {c.img_size}×{c.img_size}"
    )


# --- shared pieces ------------------------------------------------------------------------


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="grey")


def _conditions_line(c: Conditions | None, roadmap: Roadmap) -> str:
    """What the paper's numbers are and where our latency came from."""
    acc, side = roadmap.accuracy, roadmap.side
    paper = f"Paper: top-1 ({acc.conditions})"
    paper += f", {side.unit} ({side.conditions})." if side else "."
    if c is None:
        return f"{paper}  Ours: latency not measured."
    parts = [
        f"fused models, {c.runtime()}",
        _short_device(c),
        f"{c.threads} threads",
        f"batch {c.batch}, {c.img_size}×{c.img_size}",
        f"{c.dtype}, {c.memory_format}",
        f"{c.iters} timed iterations, {c.interleaved_models} models interleaved",
        host.busy_note(c.contention),
    ]
    ours = textwrap.fill(f"Ours: {'; '.join(parts)}.", CONDITIONS_WIDTH)
    return f"{paper}\n{ours}"


def _short_device(c: Conditions) -> str:
    name = c.device_name
    for noise in ("(R)", "(TM)", " CPU", " Processor"):
        name = name.replace(noise, "")
    return f"{c.device.upper()} {' '.join(name.split())}"
