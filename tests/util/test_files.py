"""Every file the tool writes: whole or not at all, normal permissions, no debris."""

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from roadmap.errors import RoadmapError
from roadmap.util import files


def test_atomic_write_replaces_whole_files(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "metrics.json"
    files.write_json(path, {"top1": 1.0})
    files.write_json(path, {"top1": 2.0})
    assert json.loads(path.read_text()) == {"top1": 2.0}
    assert os.listdir(path.parent) == ["metrics.json"]  # no temporary files left


def test_a_failed_write_leaves_the_old_file_and_no_debris(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    files.write_json(path, {"top1": 1.0})

    def half_then_crash(handle: object) -> None:
        handle.write(b'{"top1": 9')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files.write_with(path, half_then_crash)
    assert json.loads(path.read_text()) == {"top1": 1.0}
    assert os.listdir(tmp_path) == ["metrics.json"]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_files_get_the_users_normal_permissions(tmp_path: Path, umask: int) -> None:
    """Like any program's output (0o666 minus the umask), not mkstemp's owner-only 0o600."""
    before = os.umask(umask)
    try:
        files.write_text(tmp_path / "table.md", "| a |\n")
    finally:
        os.umask(before)
    assert (tmp_path / "table.md").stat().st_mode & 0o777 == 0o666 & ~umask


def _hammer(path: str, writer: int, rounds: int) -> None:
    for i in range(rounds):
        files.write_json(Path(path), {"writer": writer, "round": i, "pad": "x" * 20_000})


def test_two_processes_writing_at_once_never_corrupt_the_file(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    files.write_json(path, {"writer": -1, "round": -1, "pad": ""})
    # fork where there is one: the child needs no fresh import of torch
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    writers = [context.Process(target=_hammer, args=(str(path), w, 100)) for w in (0, 1)]
    for process in writers:
        process.start()
    reads = 0
    while any(process.is_alive() for process in writers):
        record = json.loads(path.read_text())  # raises if a reader ever sees a torn file
        assert record["writer"] in (-1, 0, 1)
        reads += 1
    for process in writers:
        process.join()
        assert process.exitcode == 0
    assert json.loads(path.read_text())["round"] == 99
    assert reads > 0
    assert os.listdir(tmp_path) == ["metrics.json"]


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temporaries_are_recognizable_and_a_killed_writers_are_cleaned_up(tmp_path: Path) -> None:
    target = tmp_path / "last.pt"
    stale = files.temp_sibling(target)
    assert stale.name.startswith(files.TEMP_MARK) and stale.name.endswith("-last.pt")
    dead = stale.with_name(stale.name.replace(f"-{os.getpid()}-", f"-{_dead_pid()}-"))
    dead.write_bytes(b"half a checkpoint")
    alive = files.temp_sibling(target)  # this process is alive: maybe still writing it
    alive.write_bytes(b"being written")
    other = files.temp_sibling(tmp_path / "other.json")
    other.write_bytes(b"")
    files.write_bytes(target, b"whole")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert dead.name not in left and alive.name in left and other.name in left
    assert files.remove_stale(tmp_path, everything=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_a_directory_target_is_replaced_whole(tmp_path: Path) -> None:
    target = tmp_path / "model.mlpackage"
    for version in ("1", "2"):
        with files.atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "weights.bin").write_text(version)
    assert (target / "weights.bin").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.mlpackage"]


def test_an_unwritable_destination_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("")
    with pytest.raises(RoadmapError, match=r"cannot create folder .*a_file: a file of that name"):
        files.write_text(tmp_path / "a_file" / "out.md", "x")
    (tmp_path / "out.md").mkdir()
    with pytest.raises(RoadmapError, match=r"cannot write .*out.md"):
        files.write_text(tmp_path / "out.md", "x")  # a file cannot replace a folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "out.md"]  # no debris
