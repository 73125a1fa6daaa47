"""Errors are for people: every input a user can get wrong ends in one line and exit code 2.

Each case here used to end in a traceback, a hang, silence, or the wrong words.
"""

import os
import pickle
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roadmap.cli import app
from roadmap.cli.app import _is_out_of_memory
from roadmap.train import loop as training
from tests.helpers import fails_in_one_line

runner = CliRunner()
TINY = ["--upto", "mobilenetv3_large", "--epochs", "2", "--quiet"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--lr", "nan"], "key 'base_lr': must be a finite number, got nan"),
        (["train", "--lr", "inf"], "key 'base_lr': must be a finite number"),
        (["build", "--num-classes", "1000000000"], "less than or equal to 1000000"),
        (["latency", "--img-size", "100000"], "less than or equal to 4096"),
        (["train", "--img-size", "100000"], "less than or equal to 4096"),
        (["export", "--batch", "100000"], "less than or equal to 4096"),
        (["build", "--save-spec", "spec.txt"], "a spec file ends in .yaml, .yml, .json"),
        (
            ["build", "--steps", "alternating_se,mobilenetv3_large"],
            "mobilenetv3_large builds the starting network: list it first",
        ),
        (["run", "--seeds", "0,x"], "--seeds takes comma-separated whole numbers"),
    ],
)
def test_bad_values(args: list[str], message: str, tmp_path: Path) -> None:
    fails_in_one_line(args, message)
    assert not list(Path.cwd().iterdir())  # nothing written where the command ran


def test_out_of_memory_names_what_was_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the bounds, the allocator may still refuse: that is one line too."""
    from roadmap.arch import builder

    def refuse(spec: object) -> None:
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
            "memory: you tried to allocate 5120000000000 bytes. Error code 12"
        )

    monkeypatch.setattr(builder, "build", refuse)
    fails_in_one_line(
        ["build", "--num-classes", "900000", "--img-size", "2048"],
        "not enough memory for what `roadmap build` was asked (--num-classes 900000, "
        "--img-size 2048)",
    )
    assert _is_out_of_memory(MemoryError()) and not _is_out_of_memory(RuntimeError("shape"))


WHOLE = "nothing is half-written"


@pytest.mark.ctrl_c  # a Ctrl-C of its own making: the suite goes on
@pytest.mark.parametrize(
    ("args", "target", "says", "never"),
    [
        (
            ["latency", "--upto", "gelu"],
            "roadmap.arch.builder.build",
            "nothing is half-written",
            "last.pt",
        ),
        (
            ["train", *TINY],
            "roadmap.train.loop.train",
            "last.pt is kept",
            "nothing is half-written",
        ),
    ],
    ids=["latency", "train"],
)
def test_ctrl_c_says_what_it_leaves_for_the_command_it_stopped(
    args: list[str], target: str, says: str, never: str, tmp_path: Path, monkeypatch
) -> None:  # noqa: ANN001
    """Ctrl-C ends every command with exit 130 and one line; only training has a last.pt."""

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(target, interrupted)
    monkeypatch.chdir(tmp_path)  # whatever happens, nothing lands in the repository's results/
    result = runner.invoke(app, args)
    assert result.exit_code == 130, result.output
    assert says in result.stderr and never not in result.stderr


def test_train_out_is_a_regular_file(tmp_path: Path) -> None:
    out = tmp_path / "results"
    out.write_text("not a folder")
    fails_in_one_line(["train", *TINY, "--out", out], "cannot create folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders anyway")
def test_train_out_is_read_only(tmp_path: Path) -> None:
    out = tmp_path / "results"
    out.mkdir(mode=0o555)
    fails_in_one_line(["train", *TINY, "--out", out], "Permission denied")


@pytest.mark.slow
def test_the_results_folder_becoming_unwritable_mid_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After epoch 1, the run folder is replaced by a file: epoch 2 cannot be saved."""
    save = training._save_epoch

    def save_then_break(run: training.Run, epoch: int, summary: dict) -> None:
        save(run, epoch, summary)
        if epoch == 0:
            shutil.rmtree(run.folder)
            run.folder.write_text("the disk went away")

    monkeypatch.setattr(training, "_save_epoch", save_then_break)
    tiny = ["--data", "synthetic:16", "--batch-size", "8", "--img-size", "32"]
    fails_in_one_line(["train", *TINY, *tiny, "--out", tmp_path], "a file of that name exists")


def test_a_foreign_pickle_is_one_line_without_torchs_warning(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    path.write_bytes(pickle.dumps({"model": object}))
    fails_in_one_line(
        ["eval", "--upto", "gelu", "--checkpoint", path], "is not a readable checkpoint"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("    return 1 / 0", "step boom (from plugin x.py) failed: ZeroDivisionError"),
        ("    return 42", "step boom (from plugin x.py) returned a value of type int"),
        (
            "    from roadmap.arch.spec import replace\n    return replace(spec, num_classes=-1)",
            "step boom (from plugin x.py) made a spec that does not validate: num_classes",
        ),
    ],
    ids=["raises", "not-a-spec", "invalid-spec"],
)
def test_a_broken_plugin_step_is_named(
    body: str, message: str, tmp_path: Path, restore_registry: None
) -> None:
    plugin = tmp_path / "x.py"
    plugin.write_text(
        "from roadmap import register_step\n\n\n"
        "@register_step('boom', title='boom', section='ext', roadmap='repvit')\n"
        f"def boom(spec):\n{body}\n"
    )
    fails_in_one_line(["--plugin", plugin, "build", "--steps", "gelu,boom"], message)


def test_too_many_threads_warns(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["latency", "--upto", "gelu", "--threads", "64", "--iters", "1", "--warmup", "0"]
        + ["--img-size", "32"],
    )
    assert result.exit_code == 0, result.output
    assert "warning: --threads 64 on" in result.output


def test_bad_options_name_the_command() -> None:
    result = runner.invoke(app, ["latency", "--backend", "tensorrt"])
    assert result.exit_code == 2 and "latency --help`" in result.output
