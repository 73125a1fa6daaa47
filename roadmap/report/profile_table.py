"""What `roadmap profile` and the lessons print: a forward pass's time by layer kind."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from roadmap.measure.latency import Comparison
from roadmap.measure.profile import KINDS, TOTAL, UNATTRIBUTED, Profile, compare
from roadmap.report.tables import NOISE_MARK, latency_legend

PROFILE_NOTE = (
    "profiled with torch.profiler ranges around every module: hooks and profiler add time, so "
    "compare shares and Δs, and take latencies from `roadmap latency`; unattributed = Python "
    "and hooks between operators"
)
PROFILE_ROWS = (*KINDS, UNATTRIBUTED)
# Kinds only some networks have (a transformer's attention and MLP): a table leaves them out
# when none of its networks spent any time in them.
OPTIONAL_KINDS = ("attention", "MLP")


def shown_kinds(profiles: Sequence[Profile]) -> tuple[str, ...]:
    """The rows of a table of these profiles: every kind but an optional one none has."""
    return tuple(
        k
        for k in PROFILE_ROWS
        if k not in OPTIONAL_KINDS or any(p.kinds[k].median_ms > 0 for p in profiles)
    )


# Column titles of the step-by-kind matrix, short enough for a 100-column terminal.
SHORT_KIND = {
    "token mixer": "token",
    "channel mixer": "channel",
    "attention": "attn",
    "downsampling": "down",
    "activation": "act",
    UNATTRIBUTED: "unattr.",
}


def profile_table(profiles: Sequence[Profile]) -> Table:
    """One network (against the one before it, when given two), or many as a kind matrix."""
    if len(profiles) > 2:
        return _profile_matrix(profiles)
    *before, after = profiles
    names = f"{before[0].label} → {after.label}" if before else after.label
    table = Table(
        title=f"Where the time goes (ms per forward pass): {names}",
        caption="\n".join(_profile_caption(after)),
        caption_justify="left",
    )
    table.add_column("kind", no_wrap=True)
    if before:
        table.add_column("before", justify="right", no_wrap=True)
    table.add_column("after [IQR]" if before else "ms [IQR]", justify="right", no_wrap=True)
    table.add_column("share", justify="right", no_wrap=True)
    if before:
        table.add_column("Δ", justify="right", no_wrap=True)
    deltas = compare(before[0], after) if before else {}
    for kind in (*shown_kinds(profiles), TOTAL):
        r = after.total if kind == TOTAL else after.kinds[kind]
        cells = [Text(kind, style="bold" if kind == TOTAL else "")]
        if before:
            b = before[0].total if kind == TOTAL else before[0].kinds[kind]
            cells.append(Text(f"{b.median_ms:.2f}"))
        cells.append(Text(f"{r.median_ms:.2f} [{r.iqr_ms:.2f}]" + (" !" if r.noisy else "")))
        share = 1.0 if kind == TOTAL else after.share(kind)
        cells.append(Text(f"{100 * share:.1f} %"))
        if before:
            cells.append(_kind_delta_text(deltas[kind]))
        table.add_row(*cells)
    return table


def _kind_delta_text(d: Comparison) -> Text:
    if d.noise:
        return Text(f"{NOISE_MARK}{d.delta_ms:+.2f}", style="dim")
    return Text(f"{d.delta_ms:+.2f}", style="red" if d.delta_ms > 0 else "green")


def _profile_matrix(profiles: Sequence[Profile]) -> Table:
    table = Table(
        title="Where the time goes, step by step (ms per forward pass, profiled)",
        caption="\n".join(
            [
                *_profile_caption(profiles[0]),
                "↑ / ↓ = slower / faster than the row above, outside noise; token / channel = "
                "token / channel mixer, down = downsampling, act = activations, unattr. = "
                "unattributed",
            ]
        ),
        caption_justify="left",
    )
    table.add_column("step", no_wrap=True)
    kinds = shown_kinds(profiles)
    for kind in (*kinds, TOTAL):
        table.add_column(SHORT_KIND.get(kind, kind), justify="right", no_wrap=True)
    previous = None
    for p in profiles:
        deltas = compare(previous, p) if previous else {}
        cells = []
        for kind in (*kinds, TOTAL):
            r = p.total if kind == TOTAL else p.kinds[kind]
            d = deltas.get(kind)
            mark = "" if d is None or d.noise else ("↑" if d.delta_ms > 0 else "↓")
            style = "" if not mark else ("red" if mark == "↑" else "green")
            cells.append(Text(f"{r.median_ms:.2f}{mark}", style=style))
        table.add_row(p.label, *cells)
        previous = p
    return table


def _profile_caption(p: Profile) -> list[str]:
    return [p.total.conditions.describe(p.total.fused), latency_legend(), PROFILE_NOTE]


def profile_data(profiles: Sequence[Profile]) -> dict:
    """Profiles and each one's per-kind differences from the one before it, for JSON."""
    pairs = zip(profiles, profiles[1:], strict=False)
    return {
        "profiles": [p.to_dict() for p in profiles],
        "comparisons": [
            {"a": a.label, "b": b.label, "kinds": _kind_deltas(a, b)} for a, b in pairs
        ],
    }


def _kind_deltas(a: Profile, b: Profile) -> dict:
    return {kind: d.to_dict() for kind, d in compare(a, b).items()}


def profile_markdown(profiles: Sequence[Profile]) -> str:
    """A lesson's table: each kind before and after the step, its Δ (noise marked), its share."""
    *before, after = profiles
    names = [f"`{p.label}`" for p in profiles]
    lines = [
        f"| kind | {' | '.join(n + ' ms' for n in names)} |"
        + (" Δ ms |" if before else "")
        + " share after |",
        "|---|" + "---:|" * (len(profiles) + (1 if before else 0) + 1),
    ]
    deltas = compare(before[0], after) if before else {}
    for kind in (*shown_kinds(profiles), TOTAL):
        values = [(p.total if kind == TOTAL else p.kinds[kind]).median_ms for p in profiles]
        cells = [f"{v:.2f}" for v in values]
        if before:
            d = deltas[kind]
            cells.append(f"{NOISE_MARK}{d.delta_ms:+.2f}" if d.noise else f"**{d.delta_ms:+.2f}**")
        share = 1.0 if kind == TOTAL else after.share(kind)
        lines.append(f"| {kind} | {' | '.join(cells)} | {100 * share:.1f} % |")
    c = after.total.conditions
    lines += [
        "",
        f"Median of {after.total.n} profiled forward passes per network, fused, torch eager; "
        f"{c.short()}. {NOISE_MARK} = within noise (|Δ| below the pooled IQR); bold = outside "
        "it. Hooks and profiler add time: read shares and Δs, not absolute latency.",
    ]
    return "\n".join(lines)
