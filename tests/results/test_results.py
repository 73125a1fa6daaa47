"""The results store: locks, record lookup, set-aside records, logs, older folder names."""

import errno
import os
from pathlib import Path

import pytest

from roadmap.arch.selection import Selection
from roadmap.errors import RoadmapError
from roadmap.results import store
from roadmap.train.identity import legacy_names
from roadmap.util import files
from tests.helpers import make_record, store_record

GELU = ["mobilenetv3_large", "gelu"]


def test_a_run_folder_is_locked_while_in_use(tmp_path: Path) -> None:
    folder = store.RunKey("digits", "quick", "gelu", 0).folder(tmp_path)
    assert folder == tmp_path / "digits" / "quick" / "gelu" / "seed0"
    assert not store.is_locked(folder)
    with store.run_lock(folder):
        assert store.is_locked(folder)
        with pytest.raises(RoadmapError, match="another run is writing"):
            with store.run_lock(folder):
                pass
    assert not store.is_locked(folder)


@pytest.mark.parametrize("code", [errno.ENOSYS, errno.ENOLCK])
def test_a_file_system_without_locks_is_refused_not_taken_for_a_busy_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """Lustre without -o flock answers ENOSYS, NFS mounted nolock ENOLCK: no lock is no
    protection, and "another run is writing" would send the user looking for a ghost."""

    def no_locks(fd: int, op: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(store.fcntl, "flock", no_locks)
    with pytest.raises(RoadmapError, match="working flock"):
        with store.run_lock(tmp_path / "seed0"):
            pass
    (tmp_path / "seed0.lock").touch()
    with pytest.raises(RoadmapError, match="working flock"):  # and --status says so too
        store.is_locked(tmp_path / "seed0")


def test_taking_the_lock_clears_what_killed_writers_left(tmp_path: Path) -> None:
    folder = tmp_path / "seed0"
    folder.mkdir()
    debris = files.temp_sibling(folder / store.CHECKPOINT)
    debris.write_bytes(b"half")
    with store.run_lock(folder):
        assert list(folder.iterdir()) == []


def test_records_are_found_only_for_the_same_spec_and_recipe(tmp_path: Path) -> None:
    record = make_record(GELU, 0, 90.0)
    folder = store_record(tmp_path, record)
    assert store.find_record(folder, record.spec_hash, record.recipe_hash) == record
    assert store.find_record(folder, "b" * 12, record.recipe_hash) is None
    assert store.find_record(folder, record.spec_hash, "s" * 12) is None
    assert store.find_record(tmp_path / "missing", record.spec_hash, "r") is None


def test_a_record_round_trips_and_ignores_keys_from_later_versions(tmp_path: Path) -> None:
    record = make_record(GELU, 0, 90.0, ema_top1=91.0)
    folder = store_record(tmp_path, record)
    data = record.to_dict() | {"added_in_a_later_version": 1}
    files.write_json(folder / store.METRICS, data)
    assert store.read_record(folder) == record


INT8 = {
    "name": "gelu", "spec_hash": "0" * 12, "weights": "model", "images": 360,
    "float_top1": 90.0, "int8_top1": 89.7, "lost": 3, "gained": 2, "agreement": 98.6,
    "sqnr_db": 20.1, "calibration_images": 512, "quantization": "pt2e xnnpack",
    "runtime": "executorch", "threads": 2, "measured_at": "2026-11-30T00:00:00+00:00",
}  # fmt: skip


@pytest.mark.parametrize(
    ("int8", "message"),
    [
        ({k: v for k, v in INT8.items() if k != "lost"}, "int8.lost: missing"),
        (INT8 | {"gained": "two"}, "int8.gained"),
        ([1, 2], "int8: must be a mapping"),
    ],
)
def test_a_hand_edited_int8_field_is_one_line_naming_the_file(
    tmp_path: Path, int8: object, message: str
) -> None:
    """The int8 scores `eval --int8` adds are typed like the rest of the record: one that was
    edited by hand is refused on reading, naming the file and the key, not a KeyError later."""
    folder = store_record(tmp_path, make_record(GELU, 0, 90.0))
    good = make_record(GELU, 0, 90.0).to_dict() | {"int8": INT8}
    files.write_json(folder / store.METRICS, good)
    assert store.read_record(folder).int8.lost == 3  # a complete one reads back, typed
    files.write_json(folder / store.METRICS, good | {"int8": int8})
    with pytest.raises(store.UnreadableRecord, match=f"metrics.json: {message}"):
        store.read_record(folder)


def test_set_aside_keeps_the_old_record(tmp_path: Path) -> None:
    record = make_record(GELU, 0, 90.0)
    folder = store_record(tmp_path, record)
    moved = store.set_aside(folder)
    assert moved.name == f"seed0.old-{record.spec_hash}-{record.recipe_hash}"
    assert (moved / store.METRICS).exists() and not folder.exists()
    assert store.scan(tmp_path).records == []  # set-aside records are not current
    assert store.set_aside(folder) is None


def test_a_torn_last_log_line_is_dropped(tmp_path: Path) -> None:
    log = tmp_path / store.LOG
    store.write_log(log, [{"epoch": 1}])
    with open(log, "a") as handle:
        handle.write('{"epoch": 2, "to')
    assert store.read_jsonl(log) == [{"epoch": 1}]


def test_a_folder_with_a_0_1_name_is_adopted(tmp_path: Path) -> None:
    control = Selection.of("repvit", steps=["mobilenetv3_large", "gelu", "expansion_2", "widen"])
    (old_name,) = legacy_names(control)
    assert old_name == "widen-without-separate_mixers"
    old = tmp_path / "digits" / "quick" / old_name / "seed0"
    old.mkdir(parents=True)
    (old / store.LOG).write_text("")
    new = store.RunKey("digits", "quick", control.name, 0).folder(tmp_path)
    assert store.adopt_legacy(new, legacy_names(control)) == old
    assert (new / store.LOG).exists() and not old.exists()
    assert store.adopt_legacy(new, legacy_names(control)) is None  # already there


def test_an_unreadable_record_is_set_aside_not_overwritten(tmp_path):
    """`run` trains a network whose record does not read again; the old folder is kept."""
    folder = store_record(tmp_path, make_record(["mobilenetv3_large"], 0, 80.0))
    (folder / store.METRICS).write_text('{"top1": "abc"}')
    assert store.find_record(folder, "x", "y") is None
    moved = store.start_fresh(folder)
    assert moved == folder.with_name("seed0.unreadable")
    assert (moved / store.METRICS).read_text() == '{"top1": "abc"}' and not folder.exists()
