"""The results store: locks, record lookup, set-aside records, logs, older folder names."""

import errno
import os
from pathlib import Path

import pytest

from roadmap import files, results
from roadmap.errors import RoadmapError
from roadmap.selection import Selection, legacy_names
from tests.records import make_record, store

GELU = ["mobilenetv3_large", "gelu"]


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


@pytest.mark.parametrize("code", [errno.ENOSYS, errno.ENOLCK])
def test_a_file_system_without_locks_is_refused_not_taken_for_a_busy_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """Lustre without -o flock answers ENOSYS, NFS mounted nolock ENOLCK: no lock is no
    protection, and "another run is writing" would send the user looking for a ghost."""

    def no_locks(fd: int, op: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(results.fcntl, "flock", no_locks)
    with pytest.raises(RoadmapError, match="working flock"):
        with results.run_lock(tmp_path / "seed0"):
            pass
    (tmp_path / "seed0.lock").touch()
    with pytest.raises(RoadmapError, match="working flock"):  # and --status says so too
        results.is_locked(tmp_path / "seed0")


def test_taking_the_lock_clears_what_killed_writers_left(tmp_path: Path) -> None:
    folder = tmp_path / "seed0"
    folder.mkdir()
    debris = files.temp_sibling(folder / results.CHECKPOINT)
    debris.write_bytes(b"half")
    with results.run_lock(folder):
        assert list(folder.iterdir()) == []


def test_records_are_found_only_for_the_same_spec_and_recipe(tmp_path: Path) -> None:
    record = make_record(GELU, 0, 90.0)
    folder = store(tmp_path, record)
    assert results.find_record(folder, record.spec_hash, record.recipe_hash) == record
    assert results.find_record(folder, "b" * 12, record.recipe_hash) is None
    assert results.find_record(folder, record.spec_hash, "s" * 12) is None
    assert results.find_record(tmp_path / "missing", record.spec_hash, "r") is None


def test_a_record_round_trips_and_ignores_keys_from_later_versions(tmp_path: Path) -> None:
    record = make_record(GELU, 0, 90.0, ema_top1=91.0)
    folder = store(tmp_path, record)
    data = record.to_dict() | {"added_in_a_later_version": 1}
    files.write_json(folder / results.METRICS, data)
    assert results.read_record(folder) == record


def test_set_aside_keeps_the_old_record(tmp_path: Path) -> None:
    record = make_record(GELU, 0, 90.0)
    folder = store(tmp_path, record)
    moved = results.set_aside(folder)
    assert moved.name == f"seed0.old-{record.spec_hash}-{record.recipe_hash}"
    assert (moved / results.METRICS).exists() and not folder.exists()
    assert list(results.iter_records(tmp_path)) == []  # set-aside records are not current
    assert results.set_aside(folder) is None


def test_a_torn_last_log_line_is_dropped(tmp_path: Path) -> None:
    log = tmp_path / results.LOG
    results.write_log(log, [{"epoch": 1}])
    with open(log, "a") as handle:
        handle.write('{"epoch": 2, "to')
    assert results.read_jsonl(log) == [{"epoch": 1}]


def test_a_folder_with_a_0_1_name_is_adopted(tmp_path: Path) -> None:
    control = Selection.of(steps=["mobilenetv3_large", "gelu", "expansion_2", "widen"])
    (old_name,) = legacy_names(control)
    assert old_name == "widen-without-separate_mixers"
    old = tmp_path / "digits" / "quick" / old_name / "seed0"
    old.mkdir(parents=True)
    (old / results.LOG).write_text("")
    new = results.RunKey("digits", "quick", control.name, 0).folder(tmp_path)
    assert results.adopt_legacy(new, legacy_names(control)) == old
    assert (new / results.LOG).exists() and not old.exists()
    assert results.adopt_legacy(new, legacy_names(control)) is None  # already there
