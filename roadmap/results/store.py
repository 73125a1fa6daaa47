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
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from roadmap.errors import RoadmapError
from roadmap.results.record import RunRecord
from roadmap.util import files

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None
    import msvcrt

METRICS = "metrics.json"
FAILURE = "failed.json"  # the last error of a run that failed; removed when it runs again
LOG = "train_log.jsonl"
CHECKPOINT = "last.pt"


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


def read_record(folder: Path) -> RunRecord | None:
    """The finished record in a run folder, or None if there is none (or it is unreadable)."""
    try:
        return RunRecord.from_dict(json.loads((Path(folder) / METRICS).read_text()))
    except (OSError, json.JSONDecodeError, RoadmapError):
        return None


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
    """The record in ``folder`` if it was made with this exact spec and recipe."""
    record = read_record(folder)
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
        Where the old folder went (``seed0.old-<spec hash>-<recipe hash>[-n]``), or None if
        the folder held no finished record.
    """
    record = read_record(folder)
    if record is None:
        return None
    stem = f"{Path(folder).name}.old-{record.spec_hash}-{record.recipe_hash}"
    target, n = Path(folder).with_name(stem), 1
    while target.exists():
        target, n = Path(folder).with_name(f"{stem}-{n}"), n + 1
    os.replace(folder, target)
    return target


def iter_records(
    root: Path, *, data: str | None = None, recipe: str | None = None
) -> Iterator[RunRecord]:
    """Every finished record under the store's root (optionally of one data source and
    recipe label), in path order."""
    pattern = f"{data or '*'}/{recipe or '*'}/*/seed*/{METRICS}"
    for path in sorted(Path(root).glob(pattern)):
        if not path.parent.name.removeprefix("seed").isdigit():
            continue  # a set-aside older record
        record = read_record(path.parent)
        if record is not None:
            yield record


def labels_in_store(root: Path) -> list[tuple[str, str]]:
    """The (data, recipe label) pairs the store holds finished runs for."""
    return sorted({(r.data, r.recipe) for r in iter_records(root)})


class RunLocked(RoadmapError):
    """Another process holds a run folder's lock."""


@contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on a run folder (released when the process ends, even by a crash).

    The lock is a sibling file (``seed0.lock``), so the folder itself can be set aside while
    the lock is held. Temporary files that killed writers left in the folder are removed
    once the lock is held (no other writer can be at work there).

    Raises:
        RoadmapError: another process holds it, or the store cannot be written.
    """
    lock = _lock_path(folder)
    files.make_dirs(lock.parent)
    try:
        handle = open(lock, "a+")  # noqa: SIM115 (held for the whole block)
    except OSError as e:
        raise RoadmapError(f"cannot write in {lock.parent}: {e.strerror}") from None
    with handle:
        if not _try_lock(handle):
            raise RunLocked(
                f"another run is writing {folder}; wait for it to finish or pass another --out"
            )
        files.remove_stale(folder, everything=True)
        yield


def is_locked(folder: Path) -> bool:
    """Whether another process is training into this folder right now."""
    if not _lock_path(folder).exists():
        return False
    try:
        with run_lock(folder):
            return False
    except RunLocked:
        return True


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
