"""What the results store holds for a network: the records that trained it (by spec hash,
whatever their folder is called), their top-1 over seeds with its confidence interval, the int8
scores ``roadmap eval --int8`` added, and where else in the store a network was filed.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from roadmap.arch.selection import Selection
from roadmap.arch.spec import replace, spec_hash
from roadmap.results import store
from roadmap.results.record import RunRecord
from roadmap.study import stats


@dataclass(frozen=True)
class Accuracy:
    """Top-1 over seeds from the results store.

    Attributes:
        mean: mean top-1 (%).
        std: sample standard deviation over seeds (0.0 for one seed).
        n: number of seeds.
        seeds: the seeds found.
        values: top-1 of each seed, in the order of ``seeds``.
        ci: the mean's 95 % confidence interval (Student t over seeds).
        metric: the record field averaged (``top1`` = final epoch).
    """

    mean: float
    std: float
    n: int
    seeds: tuple[int, ...]
    values: tuple[float, ...] = ()
    ci: stats.Interval | None = None
    metric: str = "top1"


@dataclass(frozen=True)
class Int8Accuracy:
    """A network's int8 programs against its float32 deploy form, over the seeds scored with
    ``roadmap eval --int8``.

    Attributes:
        top1: mean int8 top-1 (%).
        delta: int8 minus float32 top-1, the seeds' test images pooled (every image of every
            seed is one pair), with its interval and McNemar test.
        seeds: the seeds found.
    """

    top1: float
    delta: stats.PairedDelta
    seeds: tuple[int, ...]


def held_elsewhere(source: tuple[Path, str, str], names: set[str]) -> dict[tuple[str, str], int]:
    """(data, recipe label) -> how many of ``names`` the store holds finished runs of, under
    labels other than the ones asked for (what is there under those is stale, not elsewhere)."""
    root, data, recipe = source
    held: dict[tuple[str, str], set[str]] = {}
    for rec in store.scan(root).records:
        if rec.name in names and (rec.data, rec.recipe) != (data, recipe):
            held.setdefault((rec.data, rec.recipe), set()).add(rec.name)
    return {key: len(found) for key, found in held.items()}


def accuracy_of(
    records: Sequence[RunRecord], selection: Selection, metric: str = "top1"
) -> Accuracy | None:
    """Mean/std of ``metric`` over the seeds of ``records`` (one data source and recipe label)
    that trained this network (:func:`records_of`)."""
    values = {seed: float(rec.get(metric)) for seed, rec in records_of(records, selection).items()
              if rec.get(metric) is not None}  # fmt: skip
    if not values:
        return None
    seeds = tuple(sorted(values))
    vals = tuple(values[s] for s in seeds)
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    ci = stats.mean_ci(vals)
    return Accuracy(statistics.fmean(vals), std, len(vals), seeds, vals, ci, metric)


def int8_of(records: Sequence[RunRecord], selection: Selection) -> Int8Accuracy | None:
    """The int8 scores ``roadmap eval --int8`` added to this network's records, pooled."""
    scored = {seed: rec.int8 for seed, rec in records_of(records, selection).items() if rec.int8}
    if not scored:
        return None
    lost, gained, images = (sum(getattr(s, key) for s in scored.values())
                            for key in ("lost", "gained", "images"))  # fmt: skip
    top1 = statistics.fmean(s.int8_top1 for s in scored.values())
    return Int8Accuracy(top1, stats.paired_delta(lost, gained, images), tuple(sorted(scored)))


def records_of(records: Sequence[RunRecord], selection: Selection) -> dict[int, RunRecord]:
    """The records that trained this network, by seed.

    A record counts only if its spec hash equals the spec of ``selection`` built today (at the
    record's number of classes; or that spec with a distillation head, the form a distilled run
    trains, which scores as one averaged head): results of an older architecture are never
    mixed in, and a record is found whatever its folder is called.
    """
    hashes: dict[int, set[str]] = {}
    found: dict[int, RunRecord] = {}
    for rec in records:
        if rec.num_classes not in hashes:
            spec = selection.spec(rec.num_classes)
            distilled = replace(spec, head=replace(spec.head, distillation=True))
            hashes[rec.num_classes] = {spec_hash(spec), spec_hash(distilled)}
        if rec.spec_hash in hashes[rec.num_classes]:
            found[rec.seed] = rec
    return found
