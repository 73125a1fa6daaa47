"""Runs trained in this process (group): the planned (network, seed) pairs one after another,
with the data opened once, each skipped when the store has it or another process is training
it. A sweep (:mod:`roadmap.study.sweep`) runs them here, and each worker of ``--jobs``
(:mod:`roadmap.study.parallel`) runs the same plan.

A (network, seed) whose folder has a record with the same spec and recipe hash is ``stored``
and skipped; one that another process is training right now is ``busy`` and skipped too (so
two sweeps can share a results folder); an interrupted one resumes from its ``last.pt``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from roadmap.arch.selection import Selection
from roadmap.arch.spec import spec_hash
from roadmap.errors import Stopped
from roadmap.results import store
from roadmap.results.record import RunRecord
from roadmap.study import plan
from roadmap.train import checkpoint, distributed
from roadmap.train.identity import legacy_names, run_key
from roadmap.train.loop import fit
from roadmap.train.recipe import Recipe, recipe_hash
from roadmap.train.run_options import RunOptions, open_data
from roadmap.train.sources import Datasets, parse_source

STATUSES = ("trained", "stored", "busy")


@dataclass(frozen=True)
class Outcome:
    """What a sweep did with one (network, seed).

    Attributes:
        name: the network's name.
        seed: the seed.
        status: ``trained`` now, already ``stored``, or ``busy`` (another process has it).
        record: the finished record, when there is one.
    """

    name: str
    seed: int
    status: str
    record: RunRecord | None


def train_runs(
    runs: list[plan.PlannedRun],
    data: str,
    recipe: Recipe,
    options: RunOptions,
    *,
    on_start: Callable[[str, int], None] | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Train these planned runs in this process (group), in order, with the data opened once;
    what the store has, or another process is training, is skipped."""
    procs = distributed.start(options.device)
    try:
        opened = open_data(parse_source(data), recipe, options, procs)
        outcomes = []
        for item in runs:
            run_options = dataclasses.replace(options, seed=item.seed, resume=True)
            outcome = _one(item.network, opened, recipe, run_options, procs, on_start)
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
        return outcomes
    finally:
        distributed.stop()


def _one(
    selection: Selection,
    data: Datasets,
    recipe: Recipe,
    options: RunOptions,
    procs: distributed.Processes,
    on_start: Callable[[str, int], None] | None = None,
) -> Outcome:
    """Train one selection unless the store has it, or another process is training it (the
    lock decides: two processes that both found the folder free race for it, and the loser
    counts it busy)."""
    folder = run_key(data.source, recipe, selection, options).folder(options.results)
    if procs.primary:
        store.adopt_legacy(folder, legacy_names(selection))  # a 0.1 run counts as stored
    spec = selection.spec(data.num_classes)
    record = store.find_record(folder, spec_hash(spec), recipe_hash(recipe))
    status = "stored" if record else "busy" if store.is_locked(folder) else "trained"
    # rank 0 decides (only it may probe the lock); the others follow
    code = distributed.sum_across([STATUSES.index(status) if procs.primary else 0], procs)[0]
    status = STATUSES[int(code)]
    if status == "trained":
        path = Path(folder) / store.CHECKPOINT
        if not checkpoint.matches(path, spec, recipe_hash(recipe), options.seed):
            options = dataclasses.replace(options, resume=False)
        if on_start is not None:
            on_start(selection.name, options.seed)
        try:
            record = fit(selection, data, recipe, options, procs)
        except store.RunLocked:  # another process took it between the check and the lock
            return Outcome(selection.name, options.seed, "busy", None)
        except Stopped:  # stopped on request, resumable: not a failure
            raise
        except Exception as e:
            if procs.primary:
                store.record_failure(folder, e)
            raise
    return Outcome(selection.name, options.seed, status, record)
