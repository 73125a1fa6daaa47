"""The roadmap figure's third panel: what each step changed, ours beside the paper's, as
paired horizontal bars (latency in percent, top-1 in points), a change within the noise drawn
hatched and grey (:mod:`roadmap.report.plot` lays out the figure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from matplotlib.axes import Axes

from roadmap.study.comparison import Row, Study
from roadmap.study.stats import ALPHA

OURS, PAPER, NOISE = "#1f77b4", "#ff7f0e", "#b0b0b0"  # the colours of every panel


@dataclass(frozen=True)
class Bar:
    """One row's pair of bars: ours (with its noise flag) and the paper's (None = no number)."""

    ours: float | None
    noise: bool
    paper: float | None


def latency_bars(ax: Axes, study: Study, bars: list[Bar], *, alone: bool) -> list[str]:
    _bar_panel(ax, study.rows, bars, fmt="{:+.0f}%")
    what = "latency " if alone else ""  # beside the top-1 panel, x labels say which is which
    ax.set_title(f"Δ {what}vs previous step", loc="left", fontweight="bold")
    ax.set_xlabel(f"{'change in ' if alone else 'Δ '}latency (%)\n(negative = faster)")
    agreement = study.agreement
    return [
        "Δ bars: ours hatched grey when |Δ| is below the mean IQR of the two steps (noise); "
        "paper bars only where the paper gives both steps' latency."
    ] + ([agreement.describe() + "."] if agreement else [])


def ci_err(rows: list[Row], idx: list[int]) -> list[list[float]]:
    """Asymmetric y error bars spanning each mean's 95 % confidence interval (none: 1 seed)."""
    cis = [rows[i].accuracy.ci for i in idx]
    low = [c.mean - c.low if c and c.low is not None else 0.0 for c in cis]
    high = [c.high - c.mean if c and c.high is not None else 0.0 for c in cis]
    return [low, high]


def top1_bars(ax: Axes, study: Study, bars: list[Bar]) -> list[str]:
    _bar_panel(ax, study.rows, bars, fmt="{:+.1f}")
    ax.set_xlabel("Δ top-1 (points)\n(positive = better)")
    agreement = study.accuracy_agreement
    return [
        f"Δ top-1 is noise (grey) unless Welch's t-test over seeds gives p < {ALPHA} "
        "(never with a single seed)."
    ] + ([agreement.describe() + "."] if agreement else [])


def latency_bar(rows: list[Row], i: int) -> Bar:
    row, prev = rows[i], _previous(rows, i)
    d = row.vs_previous.get("latency_ms")
    ours = 100 * d.value / (row.latency.median_ms - d.value) if d else None
    paper = None
    if prev is not None and row.paper_speed and prev.paper_speed:
        paper = 100 * (row.paper_speed - prev.paper_speed) / prev.paper_speed
    return Bar(ours, bool(d and d.noise), paper)


def top1_bar(rows: list[Row], i: int) -> Bar:
    row, prev = rows[i], _previous(rows, i)
    d = row.vs_previous.get("top1")
    paper = None
    if prev is not None and row.paper_top1 is not None and prev.paper_top1 is not None:
        paper = row.paper_top1 - prev.paper_top1
    return Bar(d.value if d else None, bool(d and d.noise), paper)


def _previous(rows: list[Row], i: int) -> Row | None:
    """The row a delta is taken against: the nearest buildable one above (as in study)."""
    return next((rows[j] for j in range(i - 1, -1, -1) if rows[j].variant.buildable), None)


def _bar_panel(ax: Axes, rows: list[Row], bars: list[Bar], *, fmt: str) -> None:
    """Horizontal bar pairs, one row per step (top to bottom), values written at bar ends."""
    height = 0.38  # two bars and a gap fill each row's unit slot
    texts = []
    for y, bar in enumerate(bars):
        if bar.ours is not None:
            face = NOISE if bar.noise else OURS
            ax.barh(
                y - height / 2,
                bar.ours,
                height,
                color=face,
                edgecolor=OURS,
                hatch="///" if bar.noise else None,
                lw=0.8,
            )
            texts.append(_bar_value(ax, bar.ours, y - height / 2, fmt))
        if bar.paper is not None:
            ax.barh(y + height / 2, bar.paper, height, color=PAPER, lw=0)
            texts.append(_bar_value(ax, bar.paper, y + height / 2, fmt))
    ax.axvline(0, color="black", lw=0.8)
    ax.tick_params(axis="y", length=0)
    ax.grid(axis="x", alpha=0.3)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # first step at the top
    ax.set_yticks(range(len(rows)), [f"{i}  {r.variant.name}" for i, r in enumerate(rows)])
    _fit_values(ax, bars, texts)


def _bar_value(ax: Axes, value: float, y: float, fmt: str) -> Any:
    return ax.annotate(
        fmt.format(value),
        (value, y),
        xytext=(4 if value >= 0 else -4, 0),
        textcoords="offset points",
        va="center",
        fontsize=10,
        ha="left" if value >= 0 else "right",
    )


def _fit_values(ax: Axes, bars: list[Bar], texts: list[Any]) -> None:
    """Symmetric x limits wide enough that the longest bar's value label stays inside."""
    span = max([abs(v) for b in bars for v in (b.ours, b.paper) if v is not None] or [1.0])
    renderer = ax.figure.canvas.get_renderer()
    widest = max([t.get_window_extent(renderer).width for t in texts] or [0.0])
    half = ax.get_window_extent(renderer).width / 2
    room = max(half - widest - 8 * ax.figure.dpi / 72, half / 3)  # 8 pt: offset plus margin
    ax.set_xlim(-span * half / room, span * half / room)


def bar_legend(axes: list[Axes], bars: list[Bar]) -> None:
    """One legend across the bar panels, in the start row (row 0 never has bars)."""
    from matplotlib.patches import Patch

    kinds = {
        "ours": any(b.ours is not None and not b.noise for b in bars),
        "ours, noise": any(b.ours is not None and b.noise for b in bars),
        "paper": any(b.paper is not None for b in bars),
    }
    styles = {
        "ours": {"color": OURS},
        "ours, noise": {"facecolor": NOISE, "edgecolor": OURS, "hatch": "///"},
        "paper": {"color": PAPER},
    }
    handles = [Patch(label=k, **styles[k]) for k, shown in kinds.items() if shown]
    if not handles:
        return
    first, last = axes[0].get_position(), axes[-1].get_position()
    # a figure legend (drawn above every panel), centred over the bars, top of row 0
    axes[0].figure.legend(
        handles=handles,
        loc="upper center",
        ncol=len(handles),
        bbox_to_anchor=((first.x0 + last.x1) / 2, first.y1 - 0.004),
        framealpha=0.9,
        columnspacing=1.0,
        handlelength=1.5,
        fontsize=10,
    )
