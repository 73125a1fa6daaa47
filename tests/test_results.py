"""The results store: atomic writes, concurrent writers, locks, record lookup."""

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from roadmap import results
from roadmap.errors import RoadmapError


def test_atomic_write_replaces_whole_files(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "metrics.json"
    results.write_json(path, {"top1": 1.0})
    results.write_json(path, {"top1": 2.0})
    assert json.loads(path.read_text()) == {"top1": 2.0}
    assert os.listdir(path.parent) == ["metrics.json"]  # no temporary files left


def test_a_failed_write_leaves_the_old_file_and_no_debris(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    results.write_json(path, {"top1": 1.0})

    def half_then_crash(handle: object) -> None:
        handle.write('{"top1": 9')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        results.atomic_write(path, half_then_crash)
    assert json.loads(path.read_text()) == {"top1": 1.0}
    assert os.listdir(tmp_path) == ["metrics.json"]


def _hammer(path: str, writer: int, rounds: int) -> None:
    for i in range(rounds):
        results.write_json(Path(path), {"writer": writer, "round": i, "pad": "x" * 20_000})


def test_two_processes_writing_at_once_never_corrupt_the_file(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    results.write_json(path, {"writer": -1, "round": -1, "pad": ""})
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
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_a_run_folder_is_locked_while_in_use(tmp_path: Path) -> None:
    folder = results.RunKey("digits", "quick", "gelu", 0).folder(tmp_path)
    assert folder == tmp_path / "digits" / "quick" / "gelu" / "seed0"
    assert not results.is_locked(folder)
    with results.run_lock(folder):
        assert results.is_locked(folder)
        with pytest.raises(RoadmapError, match="another run is writing"):
            with results.run_lock(folder):
                pass
    assert not results.is_locked(folder)


def test_records_are_found_only_for_the_same_spec_and_recipe(tmp_path: Path) -> None:
    folder = tmp_path / "digits" / "quick" / "gelu" / "seed0"
    results.write_json(folder / results.METRICS, {"spec_hash": "a", "recipe_hash": "r"})
    assert results.find_record(folder, "a", "r") is not None
    assert results.find_record(folder, "b", "r") is None
    assert results.find_record(folder, "a", "s") is None
    assert results.find_record(tmp_path / "missing", "a", "r") is None


def test_set_aside_keeps_the_old_record(tmp_path: Path) -> None:
    folder = tmp_path / "digits" / "quick" / "gelu" / "seed0"
    results.write_json(folder / results.METRICS, {"spec_hash": "a", "recipe_hash": "r"})
    moved = results.set_aside(folder)
    assert moved.name == "seed0.old-a-r" and (moved / results.METRICS).exists()
    assert not folder.exists()
    assert list(results.iter_records(tmp_path)) == []  # set-aside records are not current
    assert results.set_aside(folder) is None


def test_a_torn_last_log_line_is_dropped(tmp_path: Path) -> None:
    log = tmp_path / results.LOG
    results.append_jsonl(log, {"epoch": 1})
    with open(log, "a") as handle:
        handle.write('{"epoch": 2, "to')
    assert results.read_jsonl(log) == [{"epoch": 1}]
