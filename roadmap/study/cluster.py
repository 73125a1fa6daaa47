"""A study that outgrows one machine: its plan, shards of it, SLURM jobs, and its status.

The *plan* of ``roadmap run`` is every (network, seed) it trains, seed-major (seed 0 of every
network first), numbered. Three ways to spread it, none a home-made scheduler:

- ``--shard K/N``: this process trains plan items K, K+N, K+2N, ... (round robin, so every
  shard gets a mix of small and large networks). Disjoint, together exactly the plan, the
  same on every invocation: ``--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`` in a job
  array, or N shell loops on N machines over one shared results folder.
- ``--launcher slurm``: one SLURM job per plan item, submitted as a job array through submitit
  (the field's library: DeiT and ConvNeXt ship a ``run_with_submitit.py``); each job runs its
  GPUs as torchrun does (submitit's ``TorchDistributedEnvironment`` sets RANK, WORLD_SIZE and
  MASTER_ADDR for every task).
- ``--launcher local``: the same jobs through submitit's local executor (how the tests run the
  whole path on one machine).

Preemption: SLURM signals a job (USR2, ``signal_delay_s`` before the time limit or on
preemption); submitit checkpoints the job (:class:`RunJob` is ``Checkpointable``: its state is
the run folder's ``last.pt``) and requeues it; the requeued job resumes from the last finished
epoch and ends with the metrics an uninterrupted run would have had.

Shards and jobs never collide: a run folder is locked (``flock``) while it trains, and a
finished run is skipped. Whether ``flock`` locks across machines depends on the shared file
system (see the README).
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roadmap.errors import RoadmapError
from roadmap.results import store
from roadmap.study.plan import PlannedRun
from roadmap.train.recipe import Recipe, recipe_hash
from roadmap.train.run_options import RunOptions
from roadmap.train.sources import parse_source

__all__ = ["ClusterOptions", "RunJob", "parse_shard", "status"]

LAUNCHERS = ("none", "local", "slurm")


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` -> (K, N) with 0 <= K < N."""
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not match or not 0 <= int(match[1]) < int(match[2]):
        raise RoadmapError(f"--shard takes K/N with 0 <= K < N (e.g. 0/4), got {text!r}")
    return int(match[1]), int(match[2])


# --- jobs ------------------------------------------------------------------------------------


class RunJob:
    """One plan item as a submitit job: trains it (resuming any ``last.pt``) and returns its
    outcome. submitit calls :meth:`checkpoint` when the job is preempted or about to time out;
    the run's state is on disk, so the job simply resubmits itself."""

    def __init__(self, run: PlannedRun, data: str, recipe: Recipe, options: RunOptions) -> None:
        self.run, self.data, self.recipe, self.options = run, data, recipe, options

    def __call__(self) -> dict[str, Any]:
        from roadmap.study.sweep import sweep  # in the job's process
        from roadmap.train.interrupt import graceful_stop

        _export_torch_distributed()
        with graceful_stop():  # SIGTERM before a kill: keep the last finished epoch
            (outcome,) = sweep(
                [self.run.network],
                self.data,
                self.recipe,
                seeds=(self.run.seed,),
                options=self.options,
            )
        top1 = outcome.record.top1 if outcome.record else None
        return {"name": outcome.name, "seed": outcome.seed, "status": outcome.status, "top1": top1}

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Requeue the same job: it resumes from the run folder's ``last.pt``."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(RunJob(self.run, self.data, self.recipe, self.options))


def _export_torch_distributed() -> None:
    """Under a multi-task job, set torchrun's variables (RANK, WORLD_SIZE, ...) for this task."""
    tasks = max(int(os.environ.get(v, "1")) for v in ("SLURM_NTASKS", "SUBMITIT_LOCAL_NTASKS"))
    if tasks > 1:
        from submitit.helpers import TorchDistributedEnvironment

        TorchDistributedEnvironment().export()


@dataclass(frozen=True)
class ClusterOptions:
    """Where and how jobs run.

    Attributes:
        launcher: ``none`` (train here), ``local`` or ``slurm``.
        jobs_dir: submitit's folder for job scripts, pickles and logs.
        partition: SLURM partition.
        nodes: nodes per job.
        gpus_per_node: GPUs per node (one training process each).
        time: the time limit per job, HH:MM:SS.
        array_parallelism: at most this many jobs of the array at once.
        signal_delay_s: seconds before the time limit that the job is told to checkpoint.
        jobs: with launcher ``none``, runs trained at once by worker processes on this machine
            (:mod:`roadmap.study.parallel`); None: :func:`~roadmap.study.parallel.default_jobs`.
    """

    launcher: str = "none"
    jobs_dir: Path = Path("results/jobs")
    partition: str | None = None
    nodes: int = 1
    gpus_per_node: int = 0
    time: str = "48:00:00"
    array_parallelism: int = 64
    signal_delay_s: int = 120
    jobs: int | None = None


def minutes(hms: str) -> int:
    """``48:00:00`` -> 2880; ``90`` (minutes) is accepted too."""
    parts = hms.split(":")
    if not all(p.isdigit() for p in parts) or not 1 <= len(parts) <= 3:
        raise RoadmapError(f"--time takes HH:MM:SS (or minutes), got {hms!r}")
    values = [int(p) for p in parts]
    if len(values) == 1:
        return values[0]
    hours, mins, secs = [0] * (3 - len(values)) + values
    return hours * 60 + mins + (1 if secs else 0)


def executor(cluster: ClusterOptions) -> Any:
    """A submitit executor with the job parameters (SLURM's or the local executor's)."""
    try:
        import submitit
    except ImportError:
        raise RoadmapError('--launcher needs submitit: pip install -e ".[cluster]"') from None
    if cluster.launcher not in ("local", "slurm"):
        raise RoadmapError(f"unknown launcher {cluster.launcher!r}; use local or slurm")
    tasks = max(cluster.gpus_per_node, 1)
    try:
        ex = submitit.AutoExecutor(folder=str(cluster.jobs_dir), cluster=cluster.launcher)
    except RuntimeError as e:  # submitit's own check that SLURM is here
        raise RoadmapError(
            f"--launcher {cluster.launcher}: {e} (submit from a SLURM login node)"
        ) from None
    common = {
        "timeout_min": minutes(cluster.time),
        "nodes": cluster.nodes,
        "tasks_per_node": tasks,  # one process per GPU, as torchrun starts them
        "gpus_per_node": cluster.gpus_per_node,
        "name": "roadmap",
    }
    if cluster.launcher == "slurm":
        if not cluster.partition:
            raise RoadmapError("--launcher slurm needs --partition")
        ex.update_parameters(
            **common,
            slurm_partition=cluster.partition,
            slurm_array_parallelism=cluster.array_parallelism,
            slurm_signal_delay_s=cluster.signal_delay_s,
            cpus_per_task=8,
        )
    else:
        ex.update_parameters(
            timeout_min=common["timeout_min"],
            tasks_per_node=tasks,
            gpus_per_node=cluster.gpus_per_node,
            name="roadmap",
        )
    return ex


def submit(
    plan: list[PlannedRun], data: str, recipe: Recipe, options: RunOptions, cluster: ClusterOptions
) -> list[Any]:
    """Submit one job per plan item (a SLURM job array); returns submitit's jobs."""
    ex = executor(cluster)
    parse_source(data)  # a bad --data fails here, not in every job
    jobs = [RunJob(run, data, recipe, dataclasses.replace(options, quiet=True)) for run in plan]
    with ex.batch():
        submitted = [ex.submit(job) for job in jobs]
    return submitted


# --- status ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunStatus:
    """Where one plan item stands.

    Attributes:
        run: the plan item.
        state: ``done``, ``running`` (its folder is locked), ``failed``, ``interrupted`` (a
            ``last.pt`` and no record), ``unreadable`` (a record this version cannot read: the
            run trains again, its folder set aside first) or ``missing``.
        detail: the top-1 of a done run, the last error line of a failed one, the epochs a
            checkpoint holds, why a record does not read.
    """

    run: PlannedRun
    state: str
    detail: str = ""


def status(
    plan: list[PlannedRun], data: str, recipe: Recipe, options: RunOptions, num_classes: int
) -> list[RunStatus]:
    """The state of every plan item, read from the results store (nothing is started)."""
    from roadmap.arch.spec import spec_hash
    from roadmap.train.identity import run_key

    source = parse_source(data)
    out = []
    for item in plan:
        opts = dataclasses.replace(options, seed=item.seed)
        folder = run_key(source, recipe, item.network, opts).folder(options.results)
        digest = spec_hash(item.network.spec(num_classes))
        out.append(_status_of(item, folder, digest, recipe))
    return out


def _status_of(item: PlannedRun, folder: Path, spec_digest: str, recipe: Recipe) -> RunStatus:
    from roadmap.train import checkpoint

    try:
        record = store.read_record(folder)
    except store.UnreadableRecord as e:
        return RunStatus(item, "unreadable", str(e).removeprefix(f"{folder / store.METRICS}: "))
    failure = store.read_failure(folder)
    if record is not None and (record.spec_hash, record.recipe_hash) == (
        spec_digest,
        recipe_hash(recipe),
    ):
        return RunStatus(item, "done", f"top-1 {record.top1:.2f} %")
    if store.is_locked(folder):
        return RunStatus(item, "running")
    if failure is not None:
        return RunStatus(item, "failed", f"{failure['error']} ({failure['at']})")
    if (folder / store.CHECKPOINT).exists():
        try:
            done = checkpoint.load(folder / store.CHECKPOINT)["epochs_done"]
        except RoadmapError as e:
            return RunStatus(item, "interrupted", f"last.pt does not load: {e}")
        return RunStatus(item, "interrupted", f"{done}/{recipe.epochs} epochs saved")
    return RunStatus(item, "missing")
