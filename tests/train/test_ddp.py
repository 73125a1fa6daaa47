"""Multi-process training: torchrun with the gloo backend on CPU, two processes, one record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, make_image_folder

ROOT = REPO


@pytest.mark.slow
@pytest.mark.heavy
def test_torchrun_two_processes_write_one_record(tmp_path: Path) -> None:
    images = make_image_folder(tmp_path / "images")
    out = tmp_path / "results"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "roadmap",
        "train",
        "--upto",
        "mobilenetv3_large",
        "--data",
        f"imagefolder:{images}",
        "--recipe",
        "quick",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--workers",
        "0",
        "--out",
        str(out),
        "--quiet",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = out.glob("**/metrics.json")  # exactly one record, written by rank 0
    record = json.loads(path.read_text())
    assert record["lr"]["processes"] == 2
    assert record["lr"]["global_batch"] == 8 and record["lr"]["per_process_batch"] == 4
    assert record["environment"]["processes"] == 2
    assert record["val_images"] == 8  # the two shards together score every image once
    log = (path.parent / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["global_batch"] for line in log] == [8, 8]
    assert done.stdout.count("mobilenetv3_large on") == 1  # only rank 0 prints its table
