"""`roadmap run --jobs N`: runs trained at once by worker processes on this machine."""

import json
import multiprocessing
import os
import queue
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from roadmap.arch import registry
from roadmap.cli import app
from roadmap.errors import RoadmapError
from roadmap.study import parallel
from roadmap.study.runs import Outcome
from roadmap.train.run_options import RunOptions
from tests.helpers import REPO

runner = CliRunner()
TINY = ["--data", "synthetic:32", "--epochs", "1", "--batch-size", "16", "--img-size", "32"]


def _records(results: Path) -> dict[str, dict]:
    return {
        f"{p.parents[1].name}/{p.parent.name}": json.loads(p.read_text())
        for p in sorted(results.rglob("metrics.json"))
    }


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
@pytest.mark.heavy
def test_jobs_train_every_run_once_and_as_one_process_would(tmp_path: Path) -> None:
    """Two workers fill the plan: every run once, each run's weights and scores exactly what
    one process trains (same seed, same thread count: one here, threads // 2 = 1 there), and
    a line per run."""
    plan = ["run", "--upto", "gelu", "--seeds", "0", *TINY]
    alone = runner.invoke(app, [*plan, "--quiet", "--results", str(tmp_path / "alone")])
    assert alone.exit_code == 0, alone.output
    together = runner.invoke(app, [*plan, "--jobs", "2", "--results", str(tmp_path / "jobs")])
    assert together.exit_code == 0, together.output
    one, two = _records(tmp_path / "alone"), _records(tmp_path / "jobs")
    assert sorted(two) == sorted(one) == ["gelu/seed0", "mobilenetv3_large/seed0"]
    for run in one:
        for key in ("top1", "top5", "best_top1", "fused_top1"):
            assert two[run][key] == one[run][key], (run, key)
        ours, theirs = _weights(tmp_path / "jobs", run), _weights(tmp_path / "alone", run)
        assert ours.keys() == theirs.keys(), run
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), run
        environment = two[run]["environment"]
        assert environment["threads"] == parallel.threads_per_job(2) and environment["jobs"] == 2
    output = together.output
    assert "2 runs at a time in worker processes, 1 torch thread(s) each" in output
    for name in ("mobilenetv3_large", "gelu"):
        assert output.count(f"training {name} seed 0\n") == 1, output
        assert f"trained {name} seed 0: top-1" in output
    lines = output.splitlines()
    assert sum(line.startswith("trained ") for line in lines) == 2, output
    assert not any(line.startswith("stored ") for line in lines), output
    again = runner.invoke(app, [*plan, "--jobs", "2", "--results", str(tmp_path / "jobs")])
    stored = [line for line in again.output.splitlines() if line.startswith("stored ")]
    assert again.exit_code == 0 and len(stored) == 2, again.output


def _weights(results: Path, run: str) -> dict[str, torch.Tensor]:
    """A run's trained weights (compared tensor by tensor, exactly)."""
    (path,) = results.rglob(f"{run}/last.pt")
    return torch.load(path, weights_only=True)["model"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--jobs", "2", "--device", "cuda"], "--jobs 2 shares this machine's CPU cores"),
        (["--jobs", "2", "--launcher", "local"], "--jobs trains here"),
        (["--jobs", "0"], "--jobs"),
    ],
)
def test_jobs_refuse_what_they_cannot_do_in_one_line(args: list, message: str) -> None:
    result = runner.invoke(app, ["run", "--upto", "gelu", *TINY, *args])
    assert result.exit_code != 0 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_jobs_refuse_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RoadmapError, match="torchrun"):
        parallel.check(RunOptions(), 2)


class _Worker:
    """A finished worker as the parent sees it."""

    def __init__(self, exitcode: int) -> None:
        self.exitcode, self.pid = exitcode, None

    def is_alive(self) -> bool:
        return False

    def join(self) -> None:
        pass


def test_the_parent_reports_each_run_once_and_every_failure() -> None:
    """Workers speak of one run several times (two announce it before the lock picks one; one
    finds it stored before the trainer's word arrives): it is reported started once and ended
    once, by the trainer. A failure, and a worker that died without a word, are failures."""
    events: queue.Queue = queue.Queue()
    trained = Outcome("gelu", 0, "trained", None)
    stored = Outcome("mobilenetv3_large", 0, "stored", None)
    for event in [
        ("start", 0, ("gelu", 0)),
        ("start", 1, ("gelu", 0)),
        ("outcome", 1, Outcome("gelu", 0, "busy", None)),
        ("outcome", 1, Outcome("gelu", 0, "stored", None)),
        ("outcome", 0, trained),
        ("outcome", 0, stored),  # finished by an earlier sweep: its end is reported
        ("outcome", 1, Outcome("mobilenetv3_large", 0, "stored", None)),
        ("failed", 0, "mobilenetv3_large seed 1: boom"),
        ("exit", 0, None),
    ]:
        events.put(event)
    began, ended = [], []
    outcomes, failures, stopped = parallel._follow(
        [_Worker(1), _Worker(-9)], events, lambda *run: began.append(run), ended.append
    )
    assert outcomes == {("gelu", 0): trained, ("mobilenetv3_large", 0): stored}
    assert began == [("gelu", 0)]
    assert ended == [trained, stored]
    assert failures == [
        "mobilenetv3_large seed 1: boom",
        "worker 1 died (exit code -9, SIGKILL (out of memory?))",
    ]
    assert stopped is None


def test_a_worker_killed_mid_run_is_reported_with_its_run() -> None:
    """A worker the kernel kills while it trains (out of memory, `kill -9`) says nothing: the
    parent names the run it had started, so the user knows which one to look at."""
    events: queue.Queue = queue.Queue()
    events.put(("start", 0, ("widen", 2)))
    _, failures, _ = parallel._follow([_Worker(-9)], events, None, None)
    assert failures == [
        f"{parallel.RUN_FAILED}widen seed 2: worker 0 died training it "
        "(exit code -9, SIGKILL (out of memory?))"
    ]


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.heavy
def test_a_signal_to_the_parent_stops_every_worker_and_loses_nothing(
    tmp_path: Path, signum: int, code: int
) -> None:
    """Signalled while two runs train (Ctrl-C: finish the epoch; SIGTERM: stop at the next
    step), the workers stop and what they finished is saved: after Ctrl-C each run holds its
    first epoch, after SIGTERM (which abandons the epoch under way) nothing; either way no run
    is left looking done or locked (`run --status`)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
    command = [sys.executable, "-m", "roadmap", "run", "--upto", "gelu", "--jobs", "2"]
    command += ["--data", "synthetic:384", "--epochs", "2", "--batch-size", "16"]
    command += ["--img-size", "32", "--results", str(tmp_path)]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    seen, deadline = [], time.monotonic() + 120
    while sum("training " in line for line in seen) < 2 and time.monotonic() < deadline:
        seen.append(process.stderr.readline())
    time.sleep(1.0)  # both runs inside their first epoch
    process.send_signal(signum)
    _, rest = process.communicate(timeout=180)
    assert process.returncode == code, "".join(seen) + rest
    assert not _records(tmp_path), "a stopped run must not look finished"
    assert not list(tmp_path.rglob("*.tmp*")), "no half-written file is left"
    # what is left is what `roadmap run` again would find: no run locked or looking done; after
    # Ctrl-C, both runs hold their first epoch, from which a run resumes to the same result
    # (tests/train/test_interruptions.py: the same resume, in one process)
    jobs = command.index("--jobs")
    rest = command[3:jobs] + command[jobs + 2 :]  # the same command, less `python -m roadmap`
    status = runner.invoke(app, [*rest, "--status"])
    assert status.exit_code == 0, status.output
    assert "running" not in status.output and "done" not in status.output, status.output
    if signum == signal.SIGINT:
        assert status.output.count("1/2 epochs saved") == 2, status.output
    else:  # SIGTERM abandons the epoch under way: nothing was saved, nothing is held
        assert status.output.count("missing") + status.output.count("interrupted") >= 2


def test_the_default_is_two_jobs_on_a_cpu_with_two_threads_and_a_plan_of_two(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert parallel.default_jobs(RunOptions(), 11) == 2
        assert parallel.default_jobs(RunOptions(), 1) == 1  # one run: its own bars, no workers
        assert parallel.default_jobs(RunOptions(device="cuda"), 11) == 1
        monkeypatch.setenv("WORLD_SIZE", "2")
        assert parallel.default_jobs(RunOptions(), 11) == 1  # torchrun: one process per rank
        monkeypatch.delenv("WORLD_SIZE")
        torch.set_num_threads(1)  # OMP_NUM_THREADS=1, or a test worker: nothing to share
        assert parallel.default_jobs(RunOptions(), 11) == 1
    finally:
        torch.set_num_threads(before)


FAILING = '''
"""Test plugin: the gelu run fails as soon as it starts (in whichever process trains it).
It registers a step, as plugins do: the workers load the plugins whose steps are registered."""
import roadmap.study.runs as sweep
from roadmap import register_step


@register_step("unused_step", title="unused", section="ext", roadmap="repvit")
def unused_step(spec):
    return spec


real = sweep.fit


def fit(selection, *args, **kwargs):
    if selection.name == "gelu":
        raise RuntimeError("boom in gelu")
    return real(selection, *args, **kwargs)


sweep.fit = fit
'''


@pytest.mark.slow
@pytest.mark.usefixtures("restore_registry")
@pytest.mark.heavy
def test_a_failed_run_stops_the_plan_as_one_process_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gelu fails in one worker while the other trains mobilenetv3_large: that run finishes,
    no new run starts (separate_mixers is left), and the error names the failed run.

    It also shows that the --plugin files reach the workers (new processes: the failure comes
    from the plugin, loaded there), and only those whose steps are registered now: a plugin
    whose registrations were reset since (as a notebook might) is not passed on."""
    import roadmap.study.runs as sweep

    stale = tmp_path / "stale.py"
    stale.write_text(
        "from roadmap import register_step\n"
        "@register_step('relu', title='a stale relu', section='ext', roadmap='repvit')\n"
        "def relu(spec):\n    return spec\n"
    )
    registry.load_plugin(stale)
    registry._steps_of("repvit").unregister("relu")
    assert str(stale.resolve()) not in registry.loaded_plugins()
    monkeypatch.setattr(sweep, "fit", sweep.fit)  # the plugin patches it here too: undone after
    plugin = tmp_path / "failing.py"
    plugin.write_text(FAILING)
    args = ["--plugin", str(plugin), "run", "--upto", "separate_mixers", *TINY, "--quiet"]
    result = runner.invoke(app, [*args, "--jobs", "2", "--results", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert "gelu seed 0: RuntimeError: boom in gelu" in result.output
    assert "no new one started" in result.output
    assert sorted(_records(tmp_path / "r")) == ["mobilenetv3_large/seed0"]


@pytest.mark.slow
@pytest.mark.heavy
def test_bad_data_fails_once_as_one_process_would(tmp_path: Path) -> None:
    """Every worker fails alike before its first run: the error is said once, as without
    --jobs."""
    args = ["run", "--upto", "gelu", "--data", f"imagefolder:{tmp_path / 'none'}", "--quiet"]
    alone = runner.invoke(app, [*args, "--jobs", "1"])
    together = runner.invoke(app, [*args, "--jobs", "2"])
    assert alone.exit_code == together.exit_code == 2
    assert together.output == alone.output, (alone.output, together.output)


@pytest.mark.slow  # a training behaviour the full suite checks; the fast tier trains once elsewhere
def test_a_finished_plan_starts_no_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the store holds is told in the parent: `run --jobs 2` on a finished plan says every
    run is stored without spawning a process (it used to start two, each importing torch)."""
    plan = [
        "run",
        "--upto",
        "mobilenetv3_large",
        "--seeds",
        "0,1",
        *TINY,
        "--results",
        str(tmp_path),
    ]
    assert runner.invoke(app, [*plan, "--jobs", "1", "--quiet"]).exit_code == 0

    def no_workers(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a worker was started for a finished plan")

    monkeypatch.setattr(parallel, "train_in_workers", no_workers)
    again = runner.invoke(app, [*plan, "--jobs", "2"])
    assert again.exit_code == 0, again.output
    assert sum(line.startswith("stored ") for line in again.output.splitlines()) == 2


def test_the_workers_channels_create_no_semaphore(monkeypatch: pytest.MonkeyPatch) -> None:
    """A parent killed outright cannot unlink named semaphores, and the resource tracker then
    warns about "leaked semaphore objects" on the terminal: the channels to the workers (a pipe
    each, a flag in shared memory) create none. A multiprocessing Queue, what they replaced,
    would."""
    from multiprocessing import resource_tracker

    registered: list[str] = []
    real = resource_tracker.register

    def spy(name: str, kind: str) -> None:
        registered.append(kind)
        real(name, kind)

    monkeypatch.setattr(resource_tracker, "register", spy)
    context = multiprocessing.get_context("spawn")
    events, halt = parallel._Events(context, 2), parallel._Flag(context)
    sender = events.sender(1)
    halt.set()
    sender.put(("exit", 1, None))
    assert halt.is_set() and events.get(timeout=1.0) == ("exit", 1, None)
    with pytest.raises(queue.Empty):
        events.get(timeout=0.01)
    assert registered == []
    context.Queue()  # the check can fail: a queue's locks are tracked semaphores
    assert "semaphore" in registered
