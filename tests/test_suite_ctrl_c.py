"""One Ctrl-C ends the test suite, even when it lands in a command the test runs in-process
(the command takes the press, finishes its epoch and returns 130, as it should for a user;
tests/conftest.py then stops the session)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

SUITE = """
import os, signal, threading
from typer.testing import CliRunner
from roadmap.cli import app

def test_a_long_training_run(tmp_path):
    threading.Timer(2.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    args = ["train", "--upto", "gelu", "--data", "synthetic:512", "--epochs", "200", "--set",
            "img_size=32", "--batch-size", "32", "--quiet", "--results", str(tmp_path)]
    assert CliRunner().invoke(app, args).exit_code == 130

def test_the_next_one():
    open(os.environ["MARK"], "w").write("ran")
"""


@pytest.mark.slow  # a pytest run of its own, with a training run in it
def test_one_ctrl_c_ends_the_suite_whatever_test_it_lands_in(tmp_path: Path) -> None:
    (tmp_path / "test_two.py").write_text(SUITE)
    mark = tmp_path / "ran"
    env = {**os.environ, "PYTHONPATH": str(REPO), "MARK": str(mark)}
    env.pop("PYTEST_XDIST_WORKER", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider"]
        + [str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 130, result.stdout + result.stderr
    assert "Ctrl-C: stopping the test suite" in result.stdout + result.stderr
    assert not mark.exists()  # the next test never ran
