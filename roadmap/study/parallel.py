"""A sweep in several processes on one machine (``roadmap run --jobs N``).

Why: one training process leaves a CPU partly idle. The small convolutions of these networks
scale poorly across threads, and the per-image data work, the evaluation and Python itself run
between the threaded kernels. Two processes with one thread each trained 1.2-1.5x as many
images per second as one process with two threads on the 2-core machine this was measured on
(``benchmarks/train_cpu.py``; the README has the whole-study figure).

How: N worker processes, forked from a ``forkserver``: a clean process that has imported
torch and the training code once and never run a torch kernel, so each worker starts in a
fraction of a second rather than after its own few seconds of imports, and starts clean (no
OpenMP state copied by a fork of a process that computed). Messages come back over one pipe
per worker, so nothing is left behind if this process is killed. The workers, with
``threads // N`` torch threads each, go through the *same* list of runs in the same order,
as N shells over one results folder always could: a worker trains the first run that
is neither stored nor being trained, the run folder's lock deciding between two that reach it
together (the loser counts it ``busy``). A worker that finishes early takes the next run, so no
scheduler of ours is needed and no run trains twice; the list puts the largest networks first
(:func:`largest_first`), so the end of the sweep, when a worker may have nothing left, holds
the short runs. A run's weights and scores are those one process with the same thread count
trains (the tests compare them exactly); its record says ``environment.jobs`` and how busy
the other workers kept the machine.

Signals: the workers sit in their own process group, so a terminal's Ctrl-C reaches only this
process, which passes on what it gets: the first Ctrl-C makes every worker finish its epoch,
save ``last.pt`` and stop; a second stops them at once; SIGTERM stops them at the next step,
keeping the last finished epoch. ``roadmap run`` again resumes. A worker whose parent is gone
(killed outright) stops before its next run. A run that fails stops the plan as it would in one
process: the runs in progress finish, no new one starts, and the error names the run.
"""

from __future__ import annotations

import collections
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import queue
import signal
import time
from collections.abc import Callable
from typing import Any

from roadmap.errors import EXIT_INTERRUPTED, RoadmapError, Stopped
from roadmap.study.plan import PlannedRun
from roadmap.train import interrupt
from roadmap.train.recipe import Recipe
from roadmap.train.run_options import RunOptions

__all__ = ["check", "largest_first", "threads_per_job", "train_in_workers"]

POLL_S = 0.2  # how often the parent looks at signals and dead workers between events
RUN_FAILED = "run failed: "  # how a worker's failure inside a run starts (not one before any)


def threads_per_job(jobs: int) -> int:
    """Torch threads for each of ``jobs`` workers: this process's threads (``OMP_NUM_THREADS``
    or torch's default, the cores) shared out, at least one each."""
    import torch

    return max(1, torch.get_num_threads() // jobs)


def default_jobs(options: RunOptions, runs: int) -> int:
    """``--jobs`` when not given: 2 on CPU for a plan of 2 or more runs when torch has 2 or
    more threads, else 1 (on a GPU, under torchrun, for one run). On the 2-core machine
    measured, two one-thread processes trained 1.2-1.5x the images/s of one two-thread
    process (``benchmarks/train_cpu.py step``); more than 2 was not measured, so it is never
    the default."""
    import torch

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if options.device != "cpu" or distributed or runs < 2 or torch.get_num_threads() < 2:
        return 1
    return 2


def check(options: RunOptions, jobs: int) -> None:
    """Refuse what parallel workers cannot do, before any of them starts."""
    if jobs < 1:
        raise RoadmapError(f"--jobs takes a number of processes, 1 or more; got {jobs}")
    if options.device != "cpu":
        raise RoadmapError(
            f"--jobs {jobs} shares this machine's CPU cores between runs; on {options.device} "
            "train one run at a time (--jobs 1) or one process per GPU with torchrun"
        )
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise RoadmapError("--jobs cannot be combined with torchrun: choose one of them")


def train_in_workers(
    runs: list[PlannedRun],
    data: str,
    recipe: Recipe,
    options: RunOptions,
    *,
    jobs: int,
    on_start: Callable[[str, int], None] | None = None,
    on_outcome: Callable[[Any], None] | None = None,
) -> list[Any]:
    """:func:`roadmap.study.runs.train_runs` in ``jobs`` worker processes (see the module's
    text), the most expensive runs first (:func:`largest_first`).

    Returns:
        One outcome per planned run, in the plan's order.

    Raises:
        Stopped: a signal stopped the workers (every finished epoch is saved).
        RoadmapError: a run failed; the other workers finished their runs first.
    """
    from roadmap.arch.registry import loaded_plugins

    check(options, jobs)
    jobs = min(jobs, max(1, len(runs)))
    ordered = largest_first(runs, recipe.img_size)
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(PRELOAD))
    else:  # Windows: each worker spawned, importing for itself
        context = multiprocessing.get_context("spawn")
    events, halt = _Events(context, jobs), _Flag(context)
    worker_options = dataclasses.replace(options, quiet=True, jobs=jobs)  # the parent reports
    args = (ordered, data, recipe, worker_options, threads_per_job(jobs), loaded_plugins())
    workers = [
        context.Process(
            target=_work, args=(k, *args, events.sender(k), halt), name=f"roadmap-job{k}"
        )
        for k in range(jobs)
    ]
    for w in workers:
        w.start()
    events.started()
    outcomes, failures, stopped = _follow(workers, events, on_start, on_outcome, halt)
    failures = list(dict.fromkeys(failures))  # workers that failed alike (bad data) say it once
    if failures and not any(f.startswith(RUN_FAILED) for f in failures):
        raise RoadmapError("; ".join(failures))  # before any run: what one process would say
    if failures:
        said = "; ".join(f.removeprefix(RUN_FAILED) for f in failures)
        raise RoadmapError(
            f"{said} (the runs then in progress finished and no new one started; `roadmap run` "
            "again trains the rest)"
        )
    if stopped is not None:
        raise Stopped(
            "stopped on request: every finished epoch is saved; `roadmap run` again resumes",
            stopped,
        )
    return [outcomes[key] for key in ((r.network.name, r.seed) for r in runs) if key in outcomes]


# What the fork server imports once, before it forks any worker (the bulk of a worker's start).
PRELOAD = ("roadmap.study.runs", "roadmap.train.loop")


class _Events:
    """What the workers tell this process, each over a pipe of its own.

    Pipes rather than a ``multiprocessing.Queue``: a queue's locks are named POSIX semaphores,
    and a parent killed outright (SIGKILL, the OOM killer) leaves them to the resource tracker,
    which then warns about "leaked semaphore objects" on the terminal. A pipe is two file
    descriptors the kernel closes with the process.
    """

    def __init__(self, context: Any, n: int) -> None:
        pairs = [context.Pipe(duplex=False) for _ in range(n)]
        self._readers = [reader for reader, _ in pairs]
        self._writers = [writer for _, writer in pairs]
        self._pending: collections.deque = collections.deque()

    def sender(self, k: int) -> _Sender:
        """The sending end for worker ``k``."""
        return _Sender(self._writers[k])

    def started(self) -> None:
        """Close this process's copies of the sending ends (the workers hold theirs), so that
        a worker's end of file is seen when it exits."""
        for writer in self._writers:
            writer.close()

    def get(self, timeout: float) -> Any:
        """The next message, or :class:`queue.Empty` after ``timeout`` seconds without one."""
        if not self._pending and not self._readers:  # every worker gone: wait as a queue would
            time.sleep(timeout)
        elif not self._pending:
            for reader in multiprocessing.connection.wait(self._readers, timeout):
                try:
                    self._pending.append(reader.recv())
                except EOFError:  # that worker has exited and said everything it had to say
                    self._readers.remove(reader)
        if not self._pending:
            raise queue.Empty
        return self._pending.popleft()


class _Sender:
    """A worker's end of its pipe, with the queue's ``put``. Once the parent is gone (killed
    outright) nobody reads the pipe: what the worker would say is dropped, and the worker stops
    before its next run (it checks its parent there)."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    def put(self, message: Any) -> None:
        try:
            self._connection.send(message)
        except OSError:  # BrokenPipeError: the parent is gone
            pass


class _Flag:
    """A flag every worker reads (``halt``: start no new run), in shared memory without a lock
    (one byte, written only by this process), so that no semaphore is created either."""

    def __init__(self, context: Any) -> None:
        self._value = context.RawValue("b", 0)

    def set(self) -> None:
        self._value.value = 1

    def is_set(self) -> bool:
        return bool(self._value.value)


def largest_first(runs: list[PlannedRun], img_size: int) -> list[PlannedRun]:
    """The runs in the order workers should take them: seed by seed, the network with the most
    multiply-adds first (training form, at the recipe's resolution), so that the runs left
    for the end, when some workers have nothing more to do, are the short ones. The count is
    only a guess at the time (memory-bound networks train slower than their MACs say), and a
    guess is all an order needs: every run is trained either way."""
    from roadmap.arch.builder import build
    from roadmap.measure.counts import count_macs

    macs: dict[str, int] = {}
    for run in runs:
        if run.network.name not in macs:
            macs[run.network.name] = count_macs(build(run.network.spec(10)), img_size)
    return sorted(runs, key=lambda r: (r.seed, -macs[r.network.name], r.index))


def _follow(
    workers: list[Any],
    events: Any,
    on_start: Callable[[str, int], None] | None,
    on_outcome: Callable[[Any], None] | None,
    halt: Any = None,
) -> tuple[dict[tuple[str, int], Any], list[str], int | None]:
    """Wait for the workers, passing signals on, reporting each run once as events come. After
    a failure no worker starts another run (``halt``), as one process stops at its first.

    Several workers speak of one run: two may both announce it before the lock picks one (the
    loser then says ``busy``), and one that reaches it after another trained it says
    ``stored``, perhaps before the trainer's own word arrives. So a run is reported started
    once, and ended by its ``trained`` outcome, or by ``stored`` only if nobody here started it.

    Returns:
        (the outcome per run, failure messages, the exit code of a stop or None).
    """
    request = interrupt.current()
    outcomes: dict[tuple[str, int], Any] = {}
    started: set[tuple[str, int]] = set()
    failures: list[str] = []
    stopped: int | None = None
    forwarded = {"int": False, "term": False}
    alive = set(range(len(workers)))
    training: dict[int, tuple[str, int]] = {}  # worker -> the run it is training now
    try:
        while alive:
            _forward(workers, request, forwarded)
            try:
                kind, k, payload = events.get(timeout=POLL_S)
            except queue.Empty:
                for k in list(alive):  # died without saying so (killed, out of memory)
                    if not workers[k].is_alive() and workers[k].exitcode not in (0, None):
                        alive.discard(k)
                        failures.append(_death(k, workers[k].exitcode, training.get(k)))
                        if halt is not None:
                            halt.set()
                continue
            if kind == "start":
                training[k] = payload
            elif kind == "outcome" and training.get(k) == (payload.name, payload.seed):
                del training[k]
            if kind == "start" and payload not in started:
                started.add(payload)
                if on_start is not None:
                    on_start(*payload)
            elif kind == "outcome":
                key = (payload.name, payload.seed)
                before = outcomes.get(key)
                ends = payload.status == "trained" or (
                    payload.status == "stored" and key not in started and before is None
                )
                if ends or before is None:
                    outcomes[key] = payload
                if ends and on_outcome is not None:
                    on_outcome(payload)
            elif kind == "failed":
                failures.append(payload)
                if halt is not None:
                    halt.set()
            elif kind == "stopped":
                stopped = max(stopped or 0, payload)
            elif kind == "exit":
                alive.discard(k)
    except KeyboardInterrupt:  # a second Ctrl-C here: pass it on, wait, stop now
        _send(workers, signal.SIGINT)
        _join(workers)
        raise
    _join(workers)
    return outcomes, failures, stopped


def _death(k: int, code: int, run: tuple[str, int] | None) -> str:
    """What a worker that died without a word was doing, and how it died."""
    how = f"exit code {code}"
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else ""
        how += f", {name}" + (" (out of memory?)" if -code == signal.SIGKILL else "")
    if run is None:
        return f"worker {k} died ({how})"
    return f"{RUN_FAILED}{run[0]} seed {run[1]}: worker {k} died training it ({how})"


def _forward(workers: list[Any], request: interrupt.StopRequest, forwarded: dict) -> None:
    """Pass a Ctrl-C or SIGTERM this process got on to the workers, once each."""
    if request.after_epoch and not forwarded["int"]:
        forwarded["int"] = True
        _send(workers, signal.SIGINT)
    if request.now and not forwarded["term"]:
        forwarded["term"] = True
        _send(workers, signal.SIGTERM)


def _send(workers: list[Any], signum: int) -> None:
    for w in workers:
        if w.is_alive() and w.pid is not None:
            try:
                os.kill(w.pid, signum)
            except ProcessLookupError:
                pass


def _join(workers: list[Any]) -> None:
    for w in workers:
        w.join()


class _Halted(Exception):
    """A worker told to start no new run (another run failed)."""


def _work(
    k: int,
    runs: list[PlannedRun],
    data: str,
    recipe: Recipe,
    options: RunOptions,
    threads: int,
    plugins: tuple[str, ...],
    events: Any,
    halt: Any,
) -> None:
    """One worker: the whole plan, training what no other process has (see the module)."""
    os.setpgrp()  # a terminal's Ctrl-C goes to the parent, which passes it on
    signal.signal(signal.SIGINT, signal.default_int_handler)  # until graceful_stop's handler
    parent = os.getppid()
    current: list[Any] = []  # the run this worker is training: (name, seed), or empty
    try:
        import torch

        torch.set_num_threads(threads)
        from roadmap.arch.registry import load_plugin
        from roadmap.study.runs import train_runs

        for path in plugins:
            load_plugin(path)

        def started(name: str, seed: int) -> None:
            if os.getppid() != parent:  # the parent is gone: nobody would see this run
                raise Stopped("the parent process is gone", EXIT_INTERRUPTED)
            request = interrupt.current()
            if request.after_epoch or request.now:  # asked to stop: start nothing new
                raise Stopped("stopped on request", request.exit_code)
            if halt.is_set():  # another run failed: start nothing new
                raise _Halted
            current[:] = [name, seed]
            events.put(("start", k, (name, seed)))

        with interrupt.graceful_stop(announce=False):
            train_runs(
                runs,
                data,
                recipe,
                options,
                on_start=started,
                on_outcome=lambda outcome: (current.clear(), events.put(("outcome", k, outcome))),
            )
    except _Halted:
        pass
    except Stopped as e:
        events.put(("stopped", k, e.exit_code))
    except KeyboardInterrupt:
        events.put(("stopped", k, EXIT_INTERRUPTED))
    except Exception as e:  # reported by the parent, which raises once every worker is done
        what = str(e) if isinstance(e, RoadmapError) else f"{type(e).__name__}: {e}"
        run = f"{RUN_FAILED}{current[0]} seed {current[1]}: " if current else ""
        events.put(("failed", k, run + what))
    finally:
        events.put(("exit", k, None))  # the parent reads it before the pipe's end of file
