"""Nothing is lost: a training process killed at any moment resumes to the same result.

Every run that is interrupted here is a real `python -m roadmap train` subprocess, signalled the
way a scheduler or a user would: SIGTERM (what `timeout`, SLURM and Kubernetes send) and SIGKILL
(what follows when the grace period is over). One run is interrupted three times in a row, each
time resumed with `--resume`: before its first checkpoint, right after a checkpoint is written
(the window in which the epoch log is written), and mid-epoch. The property checked does not
depend on where exactly each signal lands: the run must end with exactly the metrics and the
epoch log of an uninterrupted run (CPU, same seed, one thread), and no temporary file may be
left anywhere.
"""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roadmap.cli import app
from roadmap.errors import EXIT_TERMINATED
from roadmap.results import store
from roadmap.train import checkpoint
from roadmap.util.files import TEMP_MARK
from tests.helpers import REPO, make_image_folder

ROOT = REPO
EPOCHS = 4
# A tiny two-class image folder keeps an epoch short (8 steps of 8 images at 32 px).
ARGS = ["train", "--upto", "gelu", "--epochs", str(EPOCHS), "--batch-size", "8", "--quiet"]
COMPARED = ("top1", "top5", "best_top1", "best_epoch", "fused_top1", "fused_disagreements")

pytestmark = [pytest.mark.slow, pytest.mark.heavy]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = make_image_folder(tmp_path_factory.mktemp("images"), per_class=32, val_per_class=8)
    return f"imagefolder:{root}"


def start(out: Path, data: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "roadmap", *ARGS, "--data", data, "--out", str(out), *extra],
        cwd=out.parent,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so the group can be signalled
    )


def folder_of(out: Path) -> Path | None:
    found = list(out.glob("*/*/gelu/seed0"))
    return found[0] if found else None


def locked(out: Path) -> bool:
    """The run has taken its folder's lock: it is setting up or training its first epoch."""
    return bool(list(out.glob("*/*/gelu/seed0.lock")))


def wait_for(condition: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the training process never got there")
        time.sleep(0.01)


def epochs_logged(out: Path) -> int:
    folder = folder_of(out)
    return len(store.read_jsonl(folder / store.LOG)) if folder else 0


def checkpoint_written(out: Path) -> bool:
    folder = folder_of(out)
    return folder is not None and (folder / store.CHECKPOINT).exists()


def leftovers(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.startswith(TEMP_MARK)]


def final_metrics(out: Path) -> tuple[dict, list[dict]]:
    folder = folder_of(out)
    record = json.loads((folder / store.METRICS).read_text())
    log = [
        {k: v for k, v in line.items() if k not in ("images_per_s", "epoch_time_s")}
        for line in store.read_jsonl(folder / store.LOG)
    ]
    return {key: record[key] for key in COMPARED}, log


@pytest.fixture(scope="module")
def reference(data: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, list[dict]]:
    """The uninterrupted run, trained in this process (one thread, as the subprocesses have:
    CPU training is deterministic, so where it runs does not change a bit of the result, and a
    process start is most of what it would cost)."""
    out = tmp_path_factory.mktemp("uninterrupted") / "results"
    result = CliRunner().invoke(app, [*ARGS, "--data", data, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return final_metrics(out)


MOMENTS = {
    # the process has locked its run folder and is setting up or training the first epoch
    "before-first-checkpoint": locked,
    # last.pt of epoch 1 has just appeared: the log may not be written yet
    "right-after-a-checkpoint": checkpoint_written,
    # two epochs done, the third under way
    "mid-epoch": lambda out: epochs_logged(out) >= 2,
}


def interrupt(out: Path, data: str, moment: str, signum: int, resume: bool) -> None:
    """Start (or resume) the run, signal it at ``moment``, and check what it left behind."""
    process = start(out, data, *(["--resume"] if resume else []))
    wait_for(lambda: MOMENTS[moment](out) or process.poll() is not None)
    if moment == "mid-epoch":
        time.sleep(0.2)
    # SIGTERM to the whole group, loader workers included, as SLURM sends it; SIGKILL to the
    # training process alone (its workers must not outlive it)
    if signum == signal.SIGTERM:
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0, f"finished before the signal at {moment}: {stderr}"
    if signum == signal.SIGTERM:
        assert process.returncode == EXIT_TERMINATED, stderr
        assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr, stderr
        assert not leftovers(out)  # a clean stop leaves no debris
    else:
        assert process.returncode == -signal.SIGKILL
    folder = folder_of(out)
    if folder is not None and (folder / store.CHECKPOINT).exists():
        done = checkpoint.load(folder / store.CHECKPOINT)["epochs_done"]
        logged = [line["epoch"] for line in store.read_jsonl(folder / store.LOG)]
        assert logged == list(range(1, len(logged) + 1)) and len(logged) <= done
        assert not (folder / store.METRICS).exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_interrupted_three_times_the_run_ends_like_an_uninterrupted_one(
    signum: int, data: str, reference: tuple[dict, list[dict]], tmp_path: Path
) -> None:
    out = tmp_path / "results"
    for i, moment in enumerate(MOMENTS):
        interrupt(out, data, moment, signum, resume=i > 0)
    # the last resume, to the end, here in this process: the same code as in a subprocess,
    # without a process start
    resumed = CliRunner().invoke(app, [*ARGS, "--data", data, "--out", str(out), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert not leftovers(out)
    assert final_metrics(out) == reference
