"""Rendering: turns specs, steps and counts into rich renderables and plain data.

Nothing here measures or builds; callers pass in what they computed.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from roadmap.measure import Counts
from roadmap.registry import Step
from roadmap.spec import BlockSpec, Change, HeadSpec, NetSpec

MACS_LEGEND = (
    "MACs counted by fvcore at batch 1: conv + linear multiply-adds "
    "(BN, pooling, activations, SE gating and residual adds excluded)"
)


def fmt_num(value: float | None, digits: int = 1, suffix: str = "") -> str:
    """A number for a table, or an em dash when there is none."""
    return "—" if value is None else f"{value:.{digits}f}{suffix}"


def steps_table(steps: Sequence[Step]) -> Table:
    """The roadmap: one row per step with the paper's section and numbers (notes as footnotes)."""
    table = Table(
        title="The RepViT roadmap",
        caption="paper: ImageNet-1K top-1 without distillation, iPhone 12 latency (Core ML)",
        caption_justify="left",
    )
    table.add_column("#", justify="right")
    table.add_column("step", no_wrap=True)
    table.add_column("§")
    table.add_column("top-1 %", justify="right")
    table.add_column("ms", justify="right")
    table.add_column("change")
    notes = []
    for i, s in enumerate(steps):
        mark = ""
        if s.paper_note:
            notes.append(s.paper_note)
            mark = "*" * len(notes)
        table.add_row(
            str(i),
            s.name,
            s.section,
            fmt_num(s.paper_top1) + mark,
            fmt_num(s.paper_latency_ms, 2),
            s.title,
        )
    if notes:
        table.caption += "\n" + "\n".join(f"{'*' * (i + 1)} {n}" for i, n in enumerate(notes))
    return table


def steps_data(steps: Sequence[Step]) -> list[dict]:
    """The roadmap as plain data (for ``--format json``)."""
    return [
        {
            "index": i,
            "name": s.name,
            "section": s.section,
            "title": s.title,
            "paper_top1": s.paper_top1,
            "paper_latency_ms": s.paper_latency_ms,
            "paper_note": s.paper_note,
        }
        for i, s in enumerate(steps)
    ]


def describe_block(block: BlockSpec) -> str:
    """One line per block, e.g. ``repvit 192 k3 s1 e2 SE(sigmoid) gelu``."""
    parts = [block.kind, str(block.out_channels), f"k{block.kernel_size}", f"s{block.stride}"]
    if block.kind != "conv":
        parts.append(f"e{block.expand_ratio:g}")
    if block.use_se:
        parts.append(f"SE({block.se.gate})")
    parts.append(block.activation)
    return " ".join(parts)


def describe_head(head: HeadSpec, num_classes: int) -> str:
    """One line for the head."""
    parts = []
    if head.pre_pool_channels:
        parts.append(f"conv1x1 {head.pre_pool_channels} {head.activation}")
    parts.append("avgpool")
    if head.hidden_channels:
        parts.append(f"conv1x1 {head.hidden_channels} {head.activation}")
    parts.append(f"{'BN + ' if head.norm else ''}linear {num_classes}")
    return " -> ".join(parts)


def spec_tree(spec: NetSpec, changed: set[str] = frozenset()) -> Tree:
    """stem / stages / blocks / head as a tree; blocks whose path is in ``changed`` are bold."""
    tree = Tree(f"network ({spec.num_classes} classes)")
    stem = tree.add("stem")
    for i, block in enumerate(spec.stem):
        stem.add(_block_label(f"stem.{i}", block, changed))
    for s, stage in enumerate(spec.stages):
        node = tree.add(f"stage {s + 1}: width {spec.widths[s]}, depth {len(stage.blocks)}")
        for i, block in enumerate(stage.downsample):
            node.add(_block_label(f"stages.{s}.downsample.{i}", block, changed, "downsample "))
        for i, block in enumerate(stage.blocks):
            node.add(_block_label(f"stages.{s}.blocks.{i}", block, changed))
    head_style = "bold yellow" if "head" in changed else ""
    tree.add(Text(f"head: {describe_head(spec.head, spec.num_classes)}", style=head_style))
    return tree


def _block_label(path: str, block: BlockSpec, changed: set[str], prefix: str = "") -> Text:
    style = "bold yellow" if path in changed else ""
    return Text(f"{prefix}{path.rsplit('.', 1)[-1]}: {describe_block(block)}", style=style)


def changed_paths(changes: Sequence[Change]) -> set[str]:
    """Block paths (``stages.2.blocks.3``, ``stem.0``) and "head" touched by ``changes``."""
    paths = set()
    for c in changes:
        parts = c.path.split(".")
        if parts[0] == "stem":
            paths.add(".".join(parts[:2]))
        elif parts[0] == "stages" and len(parts) >= 4:
            paths.add(".".join(parts[:4]))
        elif parts[0] == "head":
            paths.add("head")
    return paths


def counts_table(counts: Counts) -> Table:
    """Params and MACs, training form beside deploy form."""
    table = Table(title=f"Size at {counts.img_size}x{counts.img_size}", caption=MACS_LEGEND)
    table.add_column("")
    table.add_column("training form", justify="right")
    table.add_column("deploy form (fused)", justify="right")
    table.add_row("params", f"{counts.params:,}", f"{counts.deploy_params:,}")
    table.add_row("MACs", f"{counts.macs / 1e6:,.1f} M", f"{counts.deploy_macs / 1e6:,.1f} M")
    return table


def changes_text(changes: Sequence[Change], against: str, limit: int = 40) -> Text:
    """The spec diff as lines (at most ``limit``, then a count of the rest)."""
    if not changes:
        return Text(f"no change against {against}")
    text = Text(f"{len(changes)} change(s) against {against}:\n", style="bold")
    for c in changes[:limit]:
        style = {"added": "green", "removed": "red"}.get(c.kind, "yellow")
        text.append(f"  {c}\n", style=style)
    if len(changes) > limit:
        text.append(f"  ... and {len(changes) - limit} more (use --format json for all)\n")
    return text
