"""Rendering a network and its measurements: the spec tree, counts, changes, latency and
export as rich renderables and plain data (the study table is :mod:`roadmap.report.study_table`).

Nothing here measures or builds; callers pass in what they computed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from roadmap.arch.blocks import get_block_kind
from roadmap.arch.selection import Selection
from roadmap.arch.spec import BlockSpec, HeadSpec, NetSpec, spec_hash
from roadmap.arch.spec_diff import Change, group_changes, split_block_path
from roadmap.interop.pretrained import Loaded
from roadmap.measure.counts import MACS_UNIT, Counts
from roadmap.measure.export import ExportResult
from roadmap.measure.latency import Comparison, LatencyRecord, consecutive
from roadmap.study.agreement import PaperAgreement

NOISE_MARK = "≈"  # a difference within the noise, in every table
MACS_LEGEND = (
    "MACs counted by fvcore at batch 1: conv + linear multiply-adds, and attention's q·kᵀ and "
    "weighted sum (BN, pooling, activations, softmax, SE gating and residual adds excluded)"
)


def fmt_num(value: float | None, digits: int = 1, suffix: str = "") -> str:
    """A number for a table, or an em dash when there is none."""
    return "—" if value is None else f"{value:.{digits}f}{suffix}"


def describe_block(block: BlockSpec) -> str:
    """One line per block, e.g. ``repvit 192 k3 s1 e2 SE(sigmoid) gelu``: the fields its kind
    reads, then its own fields (``groups=4``)."""
    reads = get_block_kind(block.kind).reads
    parts = [block.kind, str(block.out_channels), f"k{block.kernel_size}", f"s{block.stride}"]
    if "expand_ratio" in reads:
        parts.append(f"e{block.expand_ratio:g}")
    if block.use_se and "use_se" in reads:
        parts.append(f"SE({block.se.gate})")
    if "activation" in reads:
        parts.append(block.activation)
    parts += [f"{name}={value}" for name, value in block.extra.items()]
    return " ".join(parts)


def describe_head(head: HeadSpec, num_classes: int) -> str:
    """One line for the head."""
    parts = []
    if head.pre_pool_channels:
        parts.append(f"conv1x1 {head.pre_pool_channels} {head.activation}")
    parts.append(f"{head.pool}pool" if head.pool else "no pooling")
    if head.pool_norm == "layer":
        parts.append("LN")
    if head.hidden_channels:
        parts.append(f"conv1x1 {head.hidden_channels} {head.activation}")
    parts.append(f"{'BN + ' if head.norm else ''}linear {num_classes}")
    return " -> ".join(parts)


def spec_tree(spec: NetSpec, changed: set[str] = frozenset()) -> Tree:
    """stem / stages / blocks / head as a tree; blocks whose path is in ``changed`` are bold.

    Nodes are named by their spec paths, the names ``--part`` and the diffs use: stage
    ``stages.2``'s block ``blocks.0`` is ``stages.2.blocks.0``."""
    tree = Tree(f"network ({spec.num_classes} classes)")
    stem = tree.add("stem")
    for i, block in enumerate(spec.stem):
        stem.add(_block_label(f"stem.{i}", block, changed, f"{i}"))
    for s, stage in enumerate(spec.stages):
        node = tree.add(f"stages.{s}: width {spec.widths[s]}, depth {len(stage.blocks)}")
        for i, block in enumerate(stage.downsample):
            path = f"stages.{s}.downsample.{i}"
            node.add(_block_label(path, block, changed, f"downsample.{i}"))
        for i, block in enumerate(stage.blocks):
            node.add(_block_label(f"stages.{s}.blocks.{i}", block, changed, f"blocks.{i}"))
    head_style = "bold yellow" if "head" in changed else ""
    tree.add(Text(f"head: {describe_head(spec.head, spec.num_classes)}", style=head_style))
    return tree


def _block_label(path: str, block: BlockSpec, changed: set[str], name: str) -> Text:
    style = "bold yellow" if path in changed else ""
    return Text(f"{name}: {describe_block(block)}", style=style)


def changed_paths(changes: Sequence[Change]) -> set[str]:
    """Block paths (``stages.2.blocks.3``, ``stem.0``) and "head" touched by ``changes``."""
    blocks = {split_block_path(c.path)[0] for c in changes}
    return {b for b in blocks if b.startswith(("stem.", "stages.")) or b == "head"}


def build_data(network: Selection, spec: NetSpec, counts: Counts, changes: list) -> dict:
    """``roadmap build --format json``: the network, its counts, its last change, its spec."""
    return {
        "name": network.name,
        "steps": list(network.steps),
        "spec_hash": spec_hash(spec),
        "num_classes": spec.num_classes,
        **counts.to_dict(),
        "macs_unit": MACS_UNIT,
        "changes": [str(c) for c in changes],
        "spec": spec.to_dict(),
    }


def counts_table(counts: Counts) -> Table:
    """Params and MACs, training form beside deploy form."""
    table = Table(title=f"Size at {counts.img_size}x{counts.img_size}", caption=MACS_LEGEND)
    table.add_column("")
    table.add_column("training form", justify="right")
    table.add_column("deploy form (fused)", justify="right")
    table.add_row("params", f"{counts.params:,}", f"{counts.deploy_params:,}")
    table.add_row("MACs", f"{counts.macs / 1e6:,.1f} M", f"{counts.deploy_macs / 1e6:,.1f} M")
    return table


def changes_text(changes: Sequence[Change], against: str, limit: int = 30) -> Text:
    """The spec diff, identical changes grouped (at most ``limit`` lines, then a count)."""
    if not changes:
        return Text(f"no change against {against}")
    groups = group_changes(list(changes))
    text = Text(f"{len(changes)} field change(s) against {against}:\n", style="bold")
    for g in groups[:limit]:
        style = {"added": "green", "removed": "red"}.get(g.kind, "yellow")
        text.append(f"  {g}\n", style=style)
    if len(groups) > limit:
        text.append(f"  ... and {len(groups) - limit} more (use --format json for all)\n")
    return text


# --- latency and export ------------------------------------------------------------------


def latency_table(
    records: Sequence[LatencyRecord], agreement: PaperAgreement | None = None
) -> Table:
    """Median [IQR] per model, and each row's difference from the row above (noise marked)."""
    caption = [records[0].conditions.describe(records[0].fused), latency_legend()]
    table = Table(
        title="Latency (ms per forward pass)",
        caption="\n".join(caption + ([agreement.describe()] if agreement else [])),
        caption_justify="left",
    )
    for name, justify in [("#", "right"), ("step", "left"), ("median", "right")]:
        table.add_column(name, justify=justify, no_wrap=True)
    for name in ("IQR", "p25–p75", "Δ vs previous"):
        table.add_column(name, justify="right", no_wrap=True)
    comparisons = [None, *consecutive(records)]
    for i, (record, comparison) in enumerate(zip(records, comparisons, strict=True)):
        table.add_row(
            str(i),
            record.step,
            f"{record.median_ms:.2f}",
            f"{record.iqr_ms:.2f}" + (" !" if record.noisy else ""),
            f"{record.p25_ms:.2f}–{record.p75_ms:.2f}",
            _delta_text(comparison),
        )
    return table


def latency_legend() -> str:
    """What the latency table's marks mean (the noise mark is the study table's)."""
    return (
        f"{NOISE_MARK} = within noise: |Δ| below the pooled IQR (mean of the two rows' IQRs); "
        "! = spread: IQR over 10% of the median"
    )


def _delta_text(comparison: Comparison | None) -> Text:
    if comparison is None:
        return Text("")
    ratio = "new" if math.isnan(comparison.ratio) else f"{comparison.ratio:.2f}x"
    text = f"{comparison.delta_ms:+.2f} ({ratio})"
    if comparison.noise:
        return Text(f"{NOISE_MARK}{text}", style="dim")
    return Text(text, style="red" if comparison.delta_ms > 0 else "green")


def latency_data(records: Sequence[LatencyRecord], agreement: PaperAgreement | None = None) -> dict:
    """Records (each with its conditions), step-to-step comparisons and the agreement with the
    paper's latency column (None when not every step was measured fused), for JSON."""
    return {
        "records": [r.to_dict() for r in records],
        "comparisons": [c.to_dict() for c in consecutive(records)],
        "paper_agreement": agreement.to_dict() if agreement else None,
    }


def loaded_text(loaded: Loaded) -> Text:
    """Where starting weights came from, and what kept its fresh init."""
    text = Text(f"weights: {loaded.loaded} tensors from {loaded.source}")
    if not loaded.classifier:
        text.append("; the classifier starts fresh (another number of classes)")
    others = [n for n in loaded.skipped if not n.startswith("head.classifier.")]
    if others:
        text.append(f"; not loaded: {', '.join(others[:5])}" + (" ..." if len(others) > 5 else ""))
    return text


def export_text(result: ExportResult) -> Text:
    """What was exported and how well it matches torch."""
    text = Text(f"wrote {result.path} ({result.format}, input {list(result.input_shape)})\n")
    if result.max_abs_diff is None:
        text.append(f"check: {result.checked_with}\n", style="dim")
    elif result.sqnr_db is not None:
        text.append(
            f"int8 logits against torch's float32: SQNR {result.sqnr_db:.1f} dB, max abs diff "
            f"{result.max_abs_diff:.2e} against a logit spread of {result.logit_scale:.3g} "
            f"({result.checked_with}); a sanity bound, not an accuracy figure\n",
            style="green",
        )
    else:
        text.append(
            f"outputs match torch: max abs diff {result.max_abs_diff:.2e} against a logit "
            f"spread of {result.logit_scale:.3g} ({result.checked_with})\n",
            style="green",
        )
    return text
