"""The ablation study as data: which networks to compare, and one row of numbers per network.
:mod:`roadmap.arch.selection` plans which networks (the roadmap's prefixes, leave-one-out, only-
one); ``collect`` measures them (counts now, latency now, accuracy from the results store, the
paper's numbers from the registry) and works out every delta against the previous row and the
baseline, with a flag when the delta is within the noise. Rendering lives in
:mod:`roadmap.report.tables` and :mod:`roadmap.report.plot`; nothing here prints.

Noise rules (one place, used by every table and plot):

- latency: |delta| below the pooled IQR (``roadmap.measure.latency.compare``, the one latency rule);
- accuracy: Welch's t-test over the two rows' seeds (``roadmap.study.stats``); a difference is a
  finding only at p < 0.05, never with a single seed on either side (no spread is known);
- params and MACs are exact counts and never noisy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from roadmap.arch.builder import build
from roadmap.arch.paper import PaperResult
from roadmap.arch.reparam import fuse
from roadmap.arch.roadmaps import Roadmap
from roadmap.arch.selection import Selection
from roadmap.arch.spec import spec_hash
from roadmap.errors import RoadmapError
from roadmap.measure.conditions import Conditions
from roadmap.measure.counts import Counts, count_network
from roadmap.measure.latency import LatencyRecord, compare
from roadmap.results import store
from roadmap.results.record import RunRecord
from roadmap.study import stats
from roadmap.study.agreement import PaperAgreement, agreement, paper_agreement
from roadmap.study.plan import Variant
from roadmap.study.trained import (
    Accuracy,
    Int8Accuracy,
    accuracy_of,
    held_elsewhere,
    int8_of,
)

# --- measurements -------------------------------------------------------------------------


@dataclass(frozen=True)
class Delta:
    """A difference between two rows, and whether it is within the noise.

    Attributes:
        value: the difference (row minus the other).
        noise: whether it is within the noise (not a finding).
        p_value: Welch's t-test p-value, for accuracy over two or more seeds a side.
        seeds_needed: seeds per network a test would need to find this difference (accuracy
            differences that are not findings yet), or None.
    """

    value: float
    noise: bool
    p_value: float | None = None
    seeds_needed: int | None = None


@dataclass
class Row:
    """Everything measured about one variant.

    Attributes:
        variant: which network.
        counts: params/MACs (None when it cannot be built).
        latency: the fused model's latency record, or None.
        accuracy: from the results store, or None when no run is recorded.
        paper: what the paper reports for this network (:mod:`roadmap.arch.paper`), if
            anything.
        unfinished: its runs in the store that left a checkpoint and no record.
        int8_latency: the latency of its int8 ExecuTorch program (``table --int8``), or None.
        int8: its int8 programs' accuracy against float32 (``roadmap eval --int8``), or None.
        vs_previous: metric -> Delta against the row before.
        vs_baseline: metric -> Delta against the baseline row.
    """

    variant: Variant
    counts: Counts | None = None
    latency: LatencyRecord | None = None
    accuracy: Accuracy | None = None
    paper: PaperResult | None = None
    unfinished: list[store.Unfinished] = field(default_factory=list)
    int8_latency: LatencyRecord | None = None
    int8: Int8Accuracy | None = None
    vs_previous: dict[str, Delta] = field(default_factory=dict)
    vs_baseline: dict[str, Delta] = field(default_factory=dict)

    @property
    def paper_top1(self) -> float | None:
        return self.paper.top1 if self.paper else None

    @property
    def paper_speed(self) -> float | None:
        """The paper's speed column for this network, in its roadmap's unit."""
        return self.paper.speed if self.paper else None

    @property
    def paper_side(self) -> float | None:
        """The paper's second column for this network (its roadmap's ``side``: RepViT's
        latency, ConvNeXt's GFLOPs)."""
        return self.variant.selection.roadmap.side_of(self.paper)

    def metrics(self) -> dict[str, float | None]:
        """The numbers deltas are taken of."""
        c, lat, acc = self.counts, self.latency, self.accuracy
        return {
            "params": c.params if c else None,
            "deploy_params": c.deploy_params if c else None,
            "deploy_macs": c.deploy_macs if c else None,
            "latency_ms": lat.median_ms if lat else None,
            "top1": acc.mean if acc else None,
        }


@dataclass(frozen=True)
class Pending:
    """An accuracy Δ against the row above that is not a finding yet.

    Attributes:
        name: the row's network.
        delta: the Δ (points).
        seeds_needed: seeds per network a test would need to settle it.
    """

    name: str
    delta: float
    seeds_needed: int


@dataclass
class Study:
    """A compared set of networks, and everything said about them: what tables, plots and
    lessons render (they only read it; every number is worked out here).

    Attributes:
        rows: one per network, in order.
        agreement: our latency Δs against the paper's speed column, when the rows allow one.
        accuracy_agreement: our top-1 Δs against the paper's top-1, when the rows allow one.
        pending: accuracy Δs that are not findings yet, with the seeds each would need.
        conditions: what the rows' latency was measured under (None when not timed).
        source: (store root, data, recipe label) the accuracy was read from, or None.
        unreadable: the records under ``source`` that could not be read (path and why).
        elsewhere: for the rows that found no accuracy under ``source``'s labels: how many of
            them the store holds under each other (data, recipe label).
        stale: records under ``source``'s labels filed under a row's name whose spec is not
            the one that name builds today (another version's network): one line each.
        int8: whether the rows carry int8 columns (``table --int8``).
    """

    rows: list[Row]
    agreement: PaperAgreement | None = None
    pending: list[Pending] = field(default_factory=list)
    conditions: Conditions | None = None
    source: tuple[Path, str, str] | None = None
    unreadable: list[str] = field(default_factory=list)
    elsewhere: dict[tuple[str, str], int] = field(default_factory=dict)
    accuracy_agreement: PaperAgreement | None = None
    int8: bool = False
    stale: list[str] = field(default_factory=list)

    @property
    def roadmap(self) -> Roadmap | None:
        """The roadmap the rows come from (its paper's columns head the tables); None for a
        study without rows."""
        return self.rows[0].variant.selection.roadmap if self.rows else None

    @classmethod
    def of(
        cls,
        rows: list[Row],
        source: tuple[Path, str, str] | None = None,
        unreadable: list[str] | None = None,
    ) -> Study:
        """Sum up measured rows (``source``: where their accuracy was looked for, and which
        records there could not be read)."""
        latency = next((r.latency for r in rows if r.latency is not None), None)
        pending = [
            Pending(r.variant.name, d.value, d.seeds_needed)
            for r in rows
            if (d := r.vs_previous.get("top1")) is not None and d.noise and d.seeds_needed
        ]
        elsewhere = {}
        untrained = {r.variant.name for r in rows if r.accuracy is None and r.variant.buildable}
        if source is not None and untrained:
            elsewhere = held_elsewhere(source, untrained)
        conditions = latency.conditions if latency else None
        agreement = rows_agreement(rows)
        return cls(
            rows,
            agreement,
            pending,
            conditions,
            source,
            unreadable or [],
            elsewhere,
            accuracy_agreement(rows),
        )


def stale_lines(records: Sequence[RunRecord], rows: Sequence[Row]) -> list[str]:
    """Records filed under a row's name that were trained on another spec than the name builds
    today: why the row shows no accuracy, and what to do."""
    lines = []
    for row in rows:
        if row.accuracy is not None or not row.variant.buildable:
            continue
        mine = [r for r in records if r.name == row.variant.name]
        for rec in mine:
            today = spec_hash(row.variant.selection.spec(rec.num_classes))
            again = f"{row.variant.selection.cli_args()} --data {rec.data} --recipe {rec.recipe}"
            lines.append(
                f"{rec.data}/{rec.recipe}/{rec.name}/seed{rec.seed}: trained on another spec "
                f"(its hash {rec.spec_hash}, today's {today}: another version's network), so it "
                f"is left out; train it again with `roadmap train {again} --seed {rec.seed}`"
            )
    return lines


def collect(
    variants: Sequence[Variant],
    *,
    latency_settings: Any = None,
    results: Path | None = None,
    data: str | None = None,
    recipe: str | None = None,
    baseline: str | None = None,
    img_size: int = 224,
    paper: bool = True,
    counts: bool = True,
    progress: Callable[[str], None] | None = None,
    int8: bool = False,
) -> Study:
    """Measure every buildable variant, fill in the deltas, and sum the rows up as a Study.

    Args:
        variants: the networks, in row order.
        latency_settings: a ``roadmap.measure.latency.LatencySettings`` to measure fused latency
            with (all variants interleaved in one run), or None to skip latency.
        results: the results store's root, to read accuracy from (with ``data`` and ``recipe``).
        data: the data source's name in the store (e.g. ``digits``).
        recipe: the recipe's name in the store (e.g. ``quick``).
        baseline: the variant name deltas "vs baseline" are taken against (default: first row).
        img_size: resolution at which MACs are counted.
        paper: attach the paper's numbers to prefix rows.
        counts: count params and MACs (about a second per network); without them, rows
            still get accuracy and its deltas.
        progress: called with a few words on how far along it is (``counting 3/11: widen``).
        int8: also time each fused network's int8 ExecuTorch program (with latency), and read
            the int8 accuracy ``roadmap eval --int8`` added to the records.
    """
    say = progress or (lambda _text: None)
    quantized = None
    if int8 and latency_settings is not None:
        quantized = dataclasses.replace(latency_settings, backend="executorch", int8=True)
        quantized.check()  # ExecuTorch installed, on the CPU: fail before the builds
    rows = [Row(v) for v in variants]
    buildable = [r for r in rows if r.variant.buildable]
    deployed = []
    for i, row in enumerate(buildable if counts or latency_settings is not None else []):
        say(f"counting {i + 1}/{len(buildable)}: {row.variant.name}")
        spec = row.variant.selection.spec()
        if latency_settings is None:  # built only if this process has not counted it yet
            row.counts = count_network(spec, img_size, train_macs=False)
            continue
        model = build(spec)
        deployed.append(fuse(model))
        row.counts = count_network(
            spec, img_size, model=model, deploy=deployed[-1], train_macs=False
        )
    if latency_settings is not None and buildable:
        say(f"timing {len(buildable)} networks, {latency_settings.iters} rounds")
        _attach_latency(buildable, deployed, latency_settings)
        if quantized is not None:
            say(f"int8: quantizing and lowering {len(buildable)} ExecuTorch programs first")
            _attach_latency(buildable, deployed, quantized, "int8_latency", say)
    found = store.Scan([], [])
    if results is not None and data and recipe:
        found = store.scan(results, data=data, recipe=recipe)
        for row in buildable:
            row.accuracy = accuracy_of(found.records, row.variant.selection)
            row.int8 = int8_of(found.records, row.variant.selection) if int8 else None
            row.unfinished = [u for u in found.unfinished if u.key.name == row.variant.name]
    if paper:
        _attach_paper(rows)
    fill_deltas(rows, baseline)
    source = (results, data, recipe) if results is not None and data and recipe else None
    study = Study.of(rows, source, found.unreadable)
    study.int8 = int8
    study.stale = stale_lines(found.records, buildable)
    return study


def _attach_latency(
    rows: list[Row],
    deployed: list[nn.Module],
    settings: Any,
    attribute: str = "latency",
    progress: Callable[[str], None] | None = None,
) -> None:
    """Measure the fused models of all rows interleaved, in one run."""
    from roadmap.measure import latency  # imported here: only tables that measure latency need it

    candidates = [
        latency.Candidate(r.variant.name, m, r.variant.selection.steps, fused=True)
        for r, m in zip(rows, deployed, strict=True)
    ]
    for row, record in zip(rows, latency.measure(candidates, settings, progress), strict=True):
        setattr(row, attribute, record)


def _attach_paper(rows: list[Row]) -> None:
    for row in rows:
        if row.variant.buildable:
            row.paper = row.variant.selection.paper


def paper_numbers(chosen: Selection) -> tuple[float | None, float | None]:
    """The paper's (accuracy, speed) for a network (:mod:`roadmap.arch.paper`; units as its
    roadmap's columns say), or Nones: the roadmap's prefixes, the paper's control and the
    family members have them; an ablation or a network on a spec file does not."""
    reported = chosen.paper
    return (reported.top1, reported.speed) if reported else (None, None)


# --- agreement with the paper, over a table's rows ---------------------------------------


def rows_agreement(rows: Sequence[Row]) -> PaperAgreement | None:
    """:func:`latency_agreement` over a table's rows."""
    if not rows:
        return None
    paper = [r.paper_speed for r in rows]
    return _latency(rows[0].variant.selection.roadmap, [r.latency for r in rows], paper)


def latency_agreement(
    chosen: Sequence[Selection], records: Sequence[LatencyRecord | None]
) -> PaperAgreement | None:
    """:func:`~roadmap.study.agreement.paper_agreement` of fused latencies with the paper's
    (which are of deployed networks too); None when the roadmap's paper reports no latency in
    ms per step (ConvNeXt's reports GFLOPs, RepVGG's only top-1)."""
    if not chosen:
        return None
    return _latency(chosen[0].roadmap, records, [paper_numbers(s)[1] for s in chosen])


def _latency(
    roadmap: Roadmap, records: Sequence[LatencyRecord | None], paper: Sequence[float | None]
) -> PaperAgreement | None:
    speed = roadmap.speed
    if speed is None or speed.unit != "ms":
        return None
    return paper_agreement(records, paper, f"{speed.label}: {speed.conditions}")


def accuracy_agreement(rows: Sequence[Row]) -> PaperAgreement | None:
    """Our trained top-1 changes against the paper's top-1 column (None if fewer than 2 rows
    carry both). A change is a finding when Welch's t-test over seeds gives p < 0.05 (never
    with a single seed); the others are counted as within noise. Spearman ρ compares our mean
    top-1 with the paper's over every row that has both: on other data and another recipe, a
    rank correlation is the comparison that can mean something."""
    ours = [r.accuracy.mean if r.accuracy else None for r in rows]

    def change(i: int) -> tuple[float, bool]:
        d = rows[i].vs_previous["top1"]
        return d.value, d.noise

    top1 = rows[0].variant.selection.roadmap.accuracy if rows else None
    column = f"{top1.label}: {top1.conditions}" if top1 else ""
    return agreement(ours, [r.paper_top1 for r in rows], change, "top-1", column)


# --- deltas -------------------------------------------------------------------------------


def fill_deltas(rows: list[Row], baseline: str | None = None) -> None:
    """Set ``vs_previous`` (against the nearest buildable row above) and ``vs_baseline``."""
    built = [r for r in rows if r.variant.buildable]
    base = _find(rows, baseline) if baseline else next(iter(built), None)
    previous = None
    for row in built:
        if previous is not None:
            row.vs_previous = deltas(previous, row)
        if base is not None and base is not row:
            row.vs_baseline = deltas(base, row)
        previous = row


def _find(rows: list[Row], name: str) -> Row:
    for row in rows:
        if row.variant.name == name:
            return row
    raise RoadmapError(f"baseline {name!r} is not a row; rows: {[r.variant.name for r in rows]}")


def deltas(a: Row, b: Row) -> dict[str, Delta]:
    """``b - a`` for every metric both rows have, each with its noise flag."""
    ma, mb = a.metrics(), b.metrics()
    out = {}
    for key in ma:
        if ma[key] is None or mb[key] is None:
            continue
        value = mb[key] - ma[key]
        if key == "top1":
            out[key] = _accuracy_delta(a.accuracy, b.accuracy, value)
        else:
            noise = key == "latency_ms" and compare(a.latency, b.latency).noise
            out[key] = Delta(value, noise)  # params and MACs are exact: never noise
    return out


def _accuracy_delta(a: Accuracy, b: Accuracy, value: float) -> Delta:
    p = stats.welch_p(a.values, b.values)
    finding = stats.is_finding(p)
    needed = None if finding else stats.seeds_needed(a.values, b.values)
    return Delta(value, not finding, p, needed)
