"""A sweep: train a set of networks for several seeds, skipping what the store already holds.

The networks and runs are planned by :mod:`roadmap.study.plan` (the roadmap's prefixes, or
the leave-one-out / only-one sets); each (network, seed) is then one :func:`roadmap.train.loop.fit`
call in one process group, with the data opened once (:func:`roadmap.study.runs.train_runs`),
or, with ``jobs > 1``, in worker processes on this machine that share the plan
(:mod:`roadmap.study.parallel`).

A (network, seed) whose folder has a record with the same spec and recipe hash is ``stored``
and skipped; one that another process is training right now is ``busy`` and skipped too (so
two sweeps can share a results folder); an interrupted one resumes from its ``last.pt``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from roadmap.arch.selection import Selection
from roadmap.arch.spec import spec_hash
from roadmap.results import store
from roadmap.study import parallel, plan
from roadmap.study.runs import Outcome, train_runs
from roadmap.train.identity import run_key
from roadmap.train.recipe import Recipe, recipe_hash
from roadmap.train.run_options import RunOptions
from roadmap.train.sources import parse_source


def sweep(
    selections: list[Selection],
    data: str,
    recipe: Recipe,
    *,
    seeds: tuple[int, ...] = (0,),
    options: RunOptions = RunOptions(),
    shard: tuple[int, int] | None = None,
    jobs: int = 1,
    on_start: Callable[[str, int], None] | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Train every selection for every seed (seed-major order), skipping stored and busy ones.

    Args:
        shard: (k, n) to train only plan items k, k+n, k+2n, ... (``roadmap.study.cluster``).
        jobs: train this many runs at once in worker processes on this machine, splitting the
            torch threads between them (:mod:`roadmap.study.parallel`); 1 trains here.
        on_start: called with (name, seed) when a run starts training here.
        on_outcome: called with each outcome as soon as it is known.

    Returns:
        One outcome per (selection, seed) trained here.
    """
    runs = plan.runs(selections, seeds)
    if shard is not None:
        runs = plan.shard(runs, *shard)
    if jobs > 1:  # what the store has already needs no worker process to say so
        stored = {
            (r.network.name, r.seed): rec
            for r in runs
            if (rec := _stored(r, data, recipe, options))
        }
        for run in runs:
            record = stored.get((run.network.name, run.seed))
            if record is not None and on_outcome is not None:
                on_outcome(Outcome(run.network.name, run.seed, "stored", record))
        left = [r for r in runs if (r.network.name, r.seed) not in stored]
        trained = (
            parallel.train_in_workers(
                left, data, recipe, options, jobs=jobs, on_start=on_start, on_outcome=on_outcome
            )
            if left
            else []
        )
        done = {(o.name, o.seed): o for o in trained}
        done |= {key: Outcome(*key, "stored", rec) for key, rec in stored.items()}
        return [done[key] for key in ((r.network.name, r.seed) for r in runs) if key in done]
    return train_runs(runs, data, recipe, options, on_start=on_start, on_outcome=on_outcome)


def _stored(run: plan.PlannedRun, data: str, recipe: Recipe, options: RunOptions) -> Any:
    """The record of this run the store holds finished, or None; read without opening the
    data (the record says how many classes its network was built for)."""
    seeded = dataclasses.replace(options, seed=run.seed)
    folder = run_key(parse_source(data), recipe, run.network, seeded).folder(options.results)
    try:
        record = store.read_record(folder)
    except store.UnreadableRecord:
        return None
    if record is None or record.recipe_hash != recipe_hash(recipe):
        return None
    return record if record.spec_hash == spec_hash(run.network.spec(record.num_classes)) else None
