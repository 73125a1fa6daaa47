"""The results store: one folder per (data, recipe, network, seed).

Layout::

    results/<data>/<recipe label>/<network name>/seed<k>/
        metrics.json      the record (roadmap.results.record): written last, so it means "finished"
        spec.yaml         the network that was trained
        recipe.yaml       the recipe that trained it
        train_log.jsonl   one JSON line per finished epoch
        last.pt           the checkpoint a run resumes from

``<network name>`` is :attr:`roadmap.arch.selection.Selection.name`. Every file is written
through :mod:`roadmap.util.files` (whole or not at all). A run holds an exclusive lock on its
folder while it trains (``seed<k>.lock`` beside it, an ``flock``), so two processes never
write one folder.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from roadmap.errors import RoadmapError
from roadmap.results.record import RunRecord
from roadmap.util import files, yamlio
from roadmap.util.names import did_you_mean

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None
    import msvcrt

METRICS = "metrics.json"
FAILURE = "failed.json"  # the last error of a run that failed; removed when it runs again
LOG = "train_log.jsonl"
CHECKPOINT = "last.pt"
RECIPE = "recipe.yaml"


@dataclass(frozen=True)
class RunKey:
    """What identifies a run in the store; the spec and recipe hashes are checked on top.

    Attributes:
        data: the data source's short name (``digits``, ``imagefolder-pets-1a2b3c``).
        recipe: the recipe's label (its name, with a hash suffix when overrides changed it).
        name: the network's name (``widen``, ``alternating_se-kernel_3x3``).
        seed: the training seed.
    """

    data: str
    recipe: str
    name: str
    seed: int

    def folder(self, root: Path) -> Path:
        """The run's folder under the store's root."""
        return Path(root) / self.data / self.recipe / self.name / f"seed{self.seed}"


def json_line(data: dict[str, Any]) -> str:
    """One JSON line (newline included)."""
    return json.dumps(data) + "\n"


def write_log(path: Path, lines: list[dict[str, Any]]) -> None:
    """Write a whole epoch log atomically."""
    files.write_text(path, "".join(json_line(line) for line in lines))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All complete JSON lines of a log (a torn last line from a crash is dropped)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


class UnreadableRecord(RoadmapError):
    """A ``metrics.json`` that is there but does not read as a record (the message names the
    file and the field or the fault)."""


def read_record(folder: Path) -> RunRecord | None:
    """The finished record in a run folder, or None if there is none.

    Raises:
        UnreadableRecord: the file is there but is not a record this version can read.
    """
    path = Path(folder) / METRICS
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise UnreadableRecord(f"{path}: cannot be read ({reason})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UnreadableRecord(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    try:
        record = RunRecord.from_dict(data)
    except RoadmapError as e:
        raise UnreadableRecord(f"{path}: {e}") from None
    seed = Path(folder).name.removeprefix("seed")
    if seed.isdigit() and int(seed) != record.seed:
        raise UnreadableRecord(
            f"{path}: says seed {record.seed} but is filed under seed{seed}/ (moved by hand?)"
        )
    return record


def write_record(folder: Path, record: RunRecord) -> None:
    """Write ``metrics.json``: the last file a run writes."""
    files.write_json(Path(folder) / METRICS, record.to_dict())
    clear_failure(folder)


def record_failure(folder: Path, error: BaseException) -> None:
    """Keep the last line of what stopped a run (``roadmap run --status`` shows it). Best
    effort: when the store itself is what failed, there is nothing more to keep."""
    line = (str(error).strip().splitlines() or [type(error).__name__])[-1]
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with suppress(RoadmapError, OSError):
        files.write_json(
            Path(folder) / FAILURE, {"error": f"{type(error).__name__}: {line}", "at": stamp}
        )


def read_failure(folder: Path) -> dict[str, Any] | None:
    """The failure a run left, or None."""
    try:
        return json.loads((Path(folder) / FAILURE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def clear_failure(folder: Path) -> None:
    with suppress(OSError):
        (Path(folder) / FAILURE).unlink(missing_ok=True)


def find_record(folder: Path, spec_hash: str, recipe_hash: str) -> RunRecord | None:
    """The record in ``folder`` if it was made with this exact spec and recipe (an unreadable
    one is not: the run trains again, and its folder is set aside first)."""
    try:
        record = read_record(folder)
    except UnreadableRecord:
        return None
    if record and (record.spec_hash, record.recipe_hash) == (spec_hash, recipe_hash):
        return record
    return None


def adopt_legacy(folder: Path, legacy_names: list[str]) -> Path | None:
    """Move a run folder stored under an older name to ``folder`` (its current name).

    Returns:
        The old folder's path when one was moved, else None.
    """
    folder = Path(folder)
    if folder.exists():
        return None
    for name in legacy_names:
        old = folder.parent.parent / name / folder.name
        if old.is_dir():
            files.make_dirs(folder.parent)
            os.replace(old, folder)
            return old
    return None


class AlreadyTrained(RoadmapError):
    """The store holds this run's finished record, and retraining was not asked for."""


def refuse_if_finished(folder: Path, spec_hash: str, recipe_hash: str) -> None:
    """Raise :class:`AlreadyTrained` when ``folder`` holds this run's finished record."""
    record = find_record(folder, spec_hash, recipe_hash)
    if record is not None:
        raise AlreadyTrained(
            f"{folder} already holds this run's record (top-1 {record.top1:.2f} %, finished "
            f"{record.finished_at}): `roadmap table` shows it; --retrain trains it again (the "
            "record is set aside, not deleted)"
        )


def start_fresh(folder: Path) -> Path | None:
    """Clear a run folder for a new run: a finished record is set aside (never deleted), an
    old log and checkpoint are removed. Returns where the record went, if there was one."""
    moved = set_aside(folder)
    for name in (LOG, CHECKPOINT, FAILURE):
        with suppress(FileNotFoundError):
            (Path(folder) / name).unlink()
    return moved


def remove_if_empty(folder: Path) -> None:
    """Cleanup after a run that failed before writing anything; never raises (it runs while
    the real error unwinds)."""
    with suppress(OSError):
        if Path(folder).is_dir() and not any(Path(folder).iterdir()):
            Path(folder).rmdir()


def set_aside(folder: Path) -> Path | None:
    """Move a finished record out of the way before its folder is reused (never delete it).

    Returns:
        Where the old folder went (``seed0.old-<spec hash>-<recipe hash>[-n]``, or
        ``seed0.unreadable[-n]`` for a record this version cannot read), or None if the folder
        held no finished record.
    """
    try:
        record = read_record(folder)
    except UnreadableRecord:
        stem = f"{Path(folder).name}.unreadable"
    else:
        if record is None:
            return None
        stem = f"{Path(folder).name}.old-{record.spec_hash}-{record.recipe_hash}"
    target, n = Path(folder).with_name(stem), 1
    while target.exists():
        target, n = Path(folder).with_name(f"{stem}-{n}"), n + 1
    os.replace(folder, target)
    return target


@dataclass(frozen=True)
class Unfinished:
    """A run that left a ``last.pt`` and no record: interrupted, or still training.

    Attributes:
        key: where it is filed.
        epochs_done: finished epochs (the lines of its epoch log).
        epochs: the epochs its recipe asks for (None when its recipe file is unreadable).
    """

    key: RunKey
    epochs_done: int
    epochs: int | None

    def describe(self) -> str:
        total = f"/{self.epochs}" if self.epochs else ""
        return f"interrupted at epoch {self.epochs_done}{total}, --resume"


@dataclass(frozen=True)
class Scan:
    """What a look through the store found.

    Attributes:
        records: every finished record that reads, in path order.
        unreadable: one line per ``metrics.json`` that does not (its path and why).
        unfinished: every run that left a checkpoint and no record.
    """

    records: list[RunRecord]
    unreadable: list[str]
    unfinished: list[Unfinished] = field(default_factory=list)

    def labels(self) -> list[tuple[str, str]]:
        """The (data, recipe label) pairs the records are filed under."""
        return sorted({(r.data, r.recipe) for r in self.records})

    def require(self, root: Path, data: str, recipe: str) -> None:
        """Raise unless the store holds finished runs filed under ``data``/``recipe`` (a typo
        in either is an error that lists what the store does hold, not an empty column)."""
        held = [f"{d}/{r}" for d, r in self.labels()]
        if f"{data}/{recipe}" in held:
            return
        if not held and self.unreadable:
            more = f" (and {len(self.unreadable) - 1} more)" if len(self.unreadable) > 1 else ""
            raise RoadmapError(
                f"the results store {root}/ holds no run record this version can read: "
                f"{self.unreadable[0]}{more}"
            )
        if not held:
            raise RoadmapError(f"the results store {root}/ holds no finished runs yet")
        hint = did_you_mean(f"{data}/{recipe}", held)
        raise RoadmapError(
            f"the results store {root}/ holds no runs of {data}/{recipe}{hint}; it holds: "
            + ", ".join(held)
        )


def scan(root: Path, *, data: str | None = None, recipe: str | None = None) -> Scan:
    """Every finished record under the store's root (optionally of one data source and recipe
    label). Reading needs no write access: nothing is locked, moved or cleaned up."""
    pattern = f"{data or '*'}/{recipe or '*'}/*/seed*"
    records, unreadable, unfinished = [], [], []
    for folder in sorted(Path(root).glob(pattern)):
        if not folder.name.removeprefix("seed").isdigit() or not folder.is_dir():
            continue  # a set-aside older record, or a lock file
        try:
            record = read_record(folder)
        except UnreadableRecord as e:
            unreadable.append(str(e))
            continue
        if record is not None:
            records.append(record)
        elif (folder / CHECKPOINT).exists():
            unfinished.append(_unfinished(folder))
    return Scan(records, unreadable, unfinished)


def _unfinished(folder: Path) -> Unfinished:
    """How far a run without a record got: its epoch log's lines, its recipe's epochs (read as
    text: loading ``last.pt`` would take seconds)."""
    seed = int(folder.name.removeprefix("seed"))
    key = RunKey(folder.parents[2].name, folder.parents[1].name, folder.parent.name, seed)
    try:
        recipe = yamlio.load((folder / RECIPE).read_text(encoding="utf-8"))
        epochs = recipe.get("epochs") if isinstance(recipe, dict) else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        epochs = None
    return Unfinished(
        key, len(read_jsonl(folder / LOG)), epochs if isinstance(epochs, int) else None
    )


class RunLocked(RoadmapError):
    """Another process holds a run folder's lock."""


@contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on a run folder (released when the process ends, even by a crash).

    The lock is a sibling file (``seed0.lock``), so the folder itself can be set aside while
    the lock is held. Temporary files that killed writers left in the folder are removed
    once the lock is held (no other writer can be at work there). A run that fails before it
    writes anything (a bad checkpoint, a network that does not fit) leaves nothing behind: the
    lock file, and the folders made for it that stayed empty, are removed while the lock is
    still held (a process that then locks the removed file sees that it is gone, and counts
    the run as busy).

    Raises:
        RoadmapError: another process holds it, or the store cannot be written.
    """
    lock = _lock_path(folder)
    made = [p for p in (lock.parent, *lock.parent.parents)[:LOCK_PARENTS] if not p.exists()]
    files.make_dirs(lock.parent)
    try:
        handle = open(lock, "a+")  # noqa: SIM115 (held for the whole block)
    except OSError as e:
        raise RoadmapError(f"cannot write in {lock.parent}: {e.strerror}") from None
    with handle:
        if not _try_lock(handle) or not _still_there(handle, lock):
            raise RunLocked(
                f"another run is writing {folder}; wait for it to finish or pass another --out"
            )
        files.remove_stale(folder, everything=True)
        try:
            yield
        finally:
            if not Path(folder).exists():  # nothing written: leave nothing behind
                lock.unlink(missing_ok=True)
                for parent in made:  # innermost first; only what this call made, if empty
                    with suppress(OSError):
                        parent.rmdir()


# A run's lock lives in results/DATA/RECIPE/NETWORK/: the folders a failed start may remove
# when it made them and they stayed empty (never the results root itself).
LOCK_PARENTS = 3


def _still_there(handle: Any, lock: Path) -> bool:
    """Whether the locked file is still the lock file (a failed start may have removed it
    between our open and our lock)."""
    try:
        return os.fstat(handle.fileno()).st_ino == os.stat(lock).st_ino
    except FileNotFoundError:
        return False


def is_locked(folder: Path) -> bool:
    """Whether another process is training into this folder right now. Only reads: the lock
    file is opened read-only (``flock`` does not need write access), nothing is cleaned up,
    so a read-only store can be asked."""
    try:
        handle = open(_lock_path(folder))  # noqa: SIM115 (held for the check)
    except FileNotFoundError:
        return False
    except OSError:
        return False  # cannot be opened: no writer of ours holds it
    with handle:
        if not _try_lock(handle):
            return True
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return False


def _lock_path(folder: Path) -> Path:
    return Path(folder).with_name(f"{Path(folder).name}.lock")


def _try_lock(handle: Any) -> bool:
    """True when we hold the lock, False when another process does.

    Raises:
        RoadmapError: the file system cannot lock at all (Lustre mounted without ``-o flock``
            answers ENOSYS, an NFS mount with ``nolock`` ENOLCK): refusing beats two writers.
    """
    try:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:  # pragma: no cover - Windows
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        return True
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise RoadmapError(
            f"cannot lock {handle.name}: {e.strerror}; the results folder must be on a file "
            "system with working flock (see the README's cluster section), or pass a local --out"
        ) from None
