"""Sweeps beyond one machine: shards, submitit jobs (local executor), preemption, status.

Nothing here needs a cluster: SLURM's executor is only built and inspected (a stand-in `srun`
on PATH satisfies submitit's check), and the jobs run through submitit's local executor.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roadmap.arch.selection import Selection
from roadmap.cli import app
from roadmap.errors import RoadmapError
from roadmap.results import store
from roadmap.study import cluster
from roadmap.study.plan import runs as plan_runs
from roadmap.study.plan import shard
from roadmap.train.recipe import load_recipe, recipe_hash
from roadmap.train.run_options import RunOptions
from tests.helpers import REPO, make_image_folder, make_record, store_record

ROOT = REPO
runner = CliRunner()
NETWORKS = [Selection.of("repvit", "mobilenetv3_large"), Selection.of("repvit", "gelu")]
TINY = ["--epochs", "1", "--batch-size", "16", "--img-size", "32", "--quiet"]
pytest.importorskip("submitit", reason='pip install -e ".[cluster]" (or ".[test]")')


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_shards_partition_the_plan_exactly_and_stably(n: int) -> None:
    plan = plan_runs(NETWORKS * 3, (0, 1, 2))
    shards = [shard(plan, k, n) for k in range(n)]
    indices = [p.index for s in shards for p in s]
    assert sorted(indices) == list(range(len(plan)))  # together exactly the plan, no repeats
    again = [shard(plan_runs(NETWORKS * 3, (0, 1, 2)), k, n) for k in range(n)]
    assert again == shards  # the same on every invocation


@pytest.mark.parametrize("text", ["2/2", "-1/2", "a/b", "1"])
def test_bad_shards_are_one_line(text: str) -> None:
    with pytest.raises(RoadmapError, match="--shard takes K/N"):
        cluster.parse_shard(text)


def _run(out: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "roadmap", "run", "--upto", "gelu", "--seeds", "0,1"]
    command += ["--data", "synthetic:64", *TINY, "--out", str(out), *args]
    return subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.heavy
def test_two_shards_at_once_fill_one_results_folder(tmp_path: Path) -> None:
    out = tmp_path / "results"
    shards = [_run(out, "--shard", f"{k}/2") for k in range(2)]
    for process in shards:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
    records = sorted(p.parents[1].name + "/" + p.parent.name for p in out.rglob("metrics.json"))
    assert records == [
        "gelu/seed0",
        "gelu/seed1",
        "mobilenetv3_large/seed0",
        "mobilenetv3_large/seed1",
    ]


def test_the_slurm_executor_gets_the_jobs_parameters(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    fake = tmp_path / "bin" / "srun"  # submitit looks for srun before it builds a SLURM executor
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    options = cluster.ClusterOptions(
        launcher="slurm",
        jobs_dir=tmp_path / "jobs",
        partition="gpu",
        nodes=1,
        gpus_per_node=8,
        time="48:00:00",
        array_parallelism=16,
    )
    ex = cluster.executor(options)._executor
    assert ex.parameters["partition"] == "gpu" and ex.parameters["time"] == 48 * 60
    assert (ex.parameters["ntasks_per_node"], ex.parameters["gpus_per_node"]) == (8, 8)
    script = ex._make_submission_file_text("python -m submitit.core._submit", "uid")
    for line in (
        "--partition=gpu",
        "--gpus-per-node=8",
        "--ntasks-per-node=8",
        "--signal=USR2@120",
    ):
        assert f"#SBATCH {line}" in script
    with pytest.raises(RoadmapError, match="needs --partition"):
        cluster.executor(cluster.ClusterOptions(launcher="slurm", jobs_dir=tmp_path / "jobs"))


def test_without_slurm_the_launcher_says_so(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun anywhere
    options = cluster.ClusterOptions(launcher="slurm", partition="gpu", jobs_dir=tmp_path / "j")
    with pytest.raises(RoadmapError, match="submit from a SLURM login node"):
        cluster.executor(options)


@pytest.mark.slow
def test_local_launcher_runs_a_small_study(tmp_path: Path) -> None:
    """2 networks, each one submitit job, through the same command a cluster uses (each job
    is a process of its own: two keep the test short, and seeds shard as networks do)."""
    out, jobs = tmp_path / "results", tmp_path / "jobs"
    args = ["run", "--upto", "gelu", "--seeds", "0", "--data", "synthetic:64", *TINY]
    result = runner.invoke(
        app, [*args, "--out", str(out), "--launcher", "local", "--jobs-dir", str(jobs)]
    )
    assert result.exit_code == 0, result.output
    assert "submitted 2 local job(s)" in result.output
    assert len(list(out.rglob("metrics.json"))) == 2
    status = runner.invoke(app, [*args, "--out", str(out), "--status"])
    assert "2 done" in status.output


@pytest.mark.slow
@pytest.mark.heavy
def test_a_preempted_job_requeues_and_ends_like_an_uninterrupted_run(tmp_path: Path) -> None:
    """USR2 (SLURM's preemption / time-limit signal) mid-run: submitit checkpoints the job and
    requeues it; it resumes from last.pt and ends with the metrics of an uninterrupted run."""
    data = f"imagefolder:{make_image_folder(tmp_path / 'data', per_class=32, val_per_class=8)}"
    recipe = load_recipe("quick").replace(epochs=4, batch_size=8)
    network = Selection.of("repvit", "mobilenetv3_large")
    options = RunOptions(results=tmp_path / "results", workers=0, quiet=True)
    (run,) = plan_runs([network], (0,))
    where = cluster.ClusterOptions(launcher="local", jobs_dir=tmp_path / "jobs", time="30")
    (job,) = cluster.submit([run], data, recipe, options, where)
    epoch_logs = lambda: list((tmp_path / "results").rglob("train_log.jsonl"))  # noqa: E731
    deadline = time.monotonic() + 300
    while not epoch_logs() and time.monotonic() < deadline and not job.done():
        time.sleep(0.2)
    assert not job.done(), "the job finished before it could be preempted"
    (task,) = _children(job._process.pid)  # the local executor's controller runs the task
    os.kill(task, signal.SIGUSR2)  # what SLURM sends a preempted job's tasks (submitit's choice)
    (log,) = epoch_logs()
    before = log.read_text().splitlines()
    outcome = job.result()
    assert outcome["status"] == "trained"
    logs = "".join(p.read_text() for p in (tmp_path / "jobs").glob("*_log.*"))
    assert "this job is preempted" in logs and "Requeued job" in logs
    (record,) = (tmp_path / "results").rglob("metrics.json")
    # resumed, not restarted: the epochs finished before the signal keep their log lines
    # (a rerun would log its own epoch times)
    assert 1 <= len(before) < 4 and log.read_text().splitlines()[: len(before)] == before

    # the uninterrupted run, here in this process (one thread, as the job has: CPU training
    # is deterministic, and a process start would be most of its cost)
    reference = tmp_path / "reference"
    command = ["train", "--upto", "mobilenetv3_large", "--data", data, "--epochs", "4"]
    command += ["--batch-size", "8", "--workers", "0", "--quiet", "--out", str(reference)]
    done = runner.invoke(app, command)
    assert done.exit_code == 0, done.output
    (expected,) = reference.rglob("metrics.json")
    keys = ("top1", "top5", "best_top1", "best_epoch", "fused_top1")
    got, want = json.loads(record.read_text()), json.loads(expected.read_text())
    assert {k: got[k] for k in keys} == {k: want[k] for k in keys}


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_status_reports_done_running_failed_and_missing(tmp_path: Path) -> None:
    quick = load_recipe("quick")
    plan = plan_runs(NETWORKS, (0, 1))
    options = RunOptions(results=tmp_path)
    store_record(
        tmp_path, make_record(["mobilenetv3_large"], 0, 91.5, recipe_hash=recipe_hash(quick))
    )
    gelu0 = store.RunKey("digits", "quick", "gelu", 0).folder(tmp_path)
    store.record_failure(gelu0, RoadmapError("the loss became NaN/inf in epoch 2"))
    running = store.RunKey("digits", "quick", "mobilenetv3_large", 1).folder(tmp_path)
    with store.run_lock(running):
        states = cluster.status(plan, "digits", quick, options, num_classes=10)
    assert [(s.run.network.name, s.run.seed, s.state) for s in states] == [
        ("mobilenetv3_large", 0, "done"),
        ("gelu", 0, "failed"),
        ("mobilenetv3_large", 1, "running"),
        ("gelu", 1, "missing"),
    ]
    assert states[0].detail == "top-1 91.50 %"
    assert "RoadmapError: the loss became NaN/inf in epoch 2" in states[1].detail
