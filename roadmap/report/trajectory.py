"""A trajectory on a scatter plot: points joined by arrows, each labelled where it reads best.

The plot's paper and ours panels draw a roadmap as a path through (latency, accuracy) space.
With a dozen close points, labels collide; each label is put at the nearest of sixteen offsets
that overlaps the fewest points, arrows and earlier labels, stays inside the axes, and sits
nearer to its own point than to any other (a label nearer another point reads as that one's).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox


def trajectory(ax: Axes, idx: list[int], xs: list[float], ys: list[float], color: str) -> None:
    """Points joined by arrows in order, start and end marked, numbers placed without overlap."""
    ax.scatter(xs, ys, s=42, color=color, zorder=3)
    ax.scatter(xs[-1:], ys[-1:], s=200, marker="*", color=color, zorder=4)
    for k in range(len(xs) - 1):
        ax.annotate(
            "",
            xy=(xs[k + 1], ys[k + 1]),
            xytext=(xs[k], ys[k]),
            zorder=2,
            arrowprops={
                "arrowstyle": "-|>",
                "color": color,
                "lw": 1.3,
                "alpha": 0.7,
                "shrinkA": 5,
                "shrinkB": 5,
                "mutation_scale": 13,
            },
        )
    ax.margins(0.12)
    ax.autoscale_view()
    _place_labels(ax, xs, ys, [str(i) for i in idx], color)


# Candidate label offsets (points), nearest first: eight directions at two distances.
_OFFSETS = [
    (dx * r, dy * r)
    for r in (11, 20)
    for dx, dy in (
        (0, 1),
        (1, 0),
        (0, -1),
        (-1, 0),
        (0.75, 0.75),
        (0.75, -0.75),
        (-0.75, -0.75),
        (-0.75, 0.75),
    )
]


def _place_labels(
    ax: Axes, xs: Sequence[float], ys: Sequence[float], labels: Sequence[str], color: str
) -> None:
    """Put each label where it overlaps the fewest points, arrows and earlier labels."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    ax.set_xlim(ax.get_xlim())  # freeze the limits: offsets are computed in pixels
    ax.set_ylim(ax.get_ylim())
    pts = ax.transData.transform(list(zip(xs, ys, strict=True)))
    # the last point is a big star, the others small dots (radii in pixels at the canvas dpi)
    obstacles = [_box_around(p, 10 if k == len(pts) - 1 else 6) for k, p in enumerate(pts)]
    obstacles += _arrow_boxes(pts)
    frame = ax.get_window_extent(renderer)
    for k, text in enumerate(labels):
        best = min(
            (_label_cost(fig, renderer, text, pts, k, off, obstacles, frame) for off in _OFFSETS),
            key=lambda c: c[0],
        )
        _, (dx, dy), box = best
        obstacles.append(box)
        ax.annotate(
            text,
            (xs[k], ys[k]),
            xytext=(dx, dy),
            textcoords="offset points",
            ha="center",
            va="center",
            fontsize=11,
            fontweight="bold",
            color=color,
            zorder=5,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
        )


def _label_cost(
    fig: Figure,
    renderer: Any,
    text: str,
    pts: Any,
    k: int,
    offset: tuple[float, float],
    obstacles: list[Bbox],
    frame: Bbox,
) -> tuple[float, tuple[float, float], Bbox]:
    """How bad putting point ``k``'s label at ``offset`` is: overlaps, ambiguity, clipping."""
    scale = fig.dpi / 72  # offsets are in points, boxes in pixels
    x, y = pts[k][0] + offset[0] * scale, pts[k][1] + offset[1] * scale
    box = _label_box(fig, renderer, text, x, y)
    own = math.dist((x, y), pts[k])
    # A label nearer to another point than to its own reads as that point's label.
    ambiguous = sum(math.dist((x, y), p) < own + 4 * scale for j, p in enumerate(pts) if j != k)
    overlaps = sum(box.overlaps(o) for o in obstacles)
    # Weights: clipping is worst, then misreading, then overlap; ties go to the nearest offset.
    cost = 100 * (not _inside(box, frame)) + 10 * ambiguous + 4 * overlaps + own / 100
    return cost, offset, box


def _label_box(fig: Figure, renderer: Any, text: str, x: float, y: float) -> Bbox:
    """The pixel box a bold 11 pt label centred at (x, y) would take (with its padding)."""
    t = fig.text(0, 0, text, fontsize=11, fontweight="bold")
    w, h = t.get_window_extent(renderer).size
    t.remove()
    pad = 3  # the label's rounded background reaches a little past the glyphs
    return Bbox.from_bounds(x - w / 2 - pad, y - h / 2 - pad, w + 2 * pad, h + 2 * pad)


def _box_around(p: Sequence[float], r: float) -> Bbox:
    return Bbox.from_bounds(p[0] - r, p[1] - r, 2 * r, 2 * r)


def _arrow_boxes(pts: Sequence[Sequence[float]]) -> list[Bbox]:
    """Small boxes along each arrow so labels avoid sitting on the lines."""
    boxes = []
    for a, b in zip(pts, pts[1:], strict=False):
        n = max(2, int(math.dist(a, b) // 8))  # one box every ~8 px along the segment
        for k in range(1, n):
            t = k / n
            boxes.append(_box_around((a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])), 2))
    return boxes


def _inside(box: Bbox, frame: Bbox) -> bool:
    return frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
