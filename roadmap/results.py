"""The results store: one folder per finished (data, recipe, step-or-ablation, seed).

Layout::

    results/<data>/<recipe>/<name>/seed<k>/
        metrics.json      the record: written last, so its presence means "finished"
        spec.yaml         the network that was trained
        recipe.yaml       the recipe that trained it
        train_log.jsonl   one JSON line per epoch
        last.pt           the checkpoint a run resumes from

Every file is written to a uniquely named temporary file in the same folder and moved into
place with ``os.replace``, which is atomic: a reader (or a crash, or Ctrl-C) sees the old file
or the new one, never half of one. A run holds an exclusive lock on its folder while it
trains, so two processes cannot interleave their checkpoints in one folder.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roadmap.errors import RoadmapError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None
    import msvcrt

METRICS = "metrics.json"
LOG = "train_log.jsonl"
CHECKPOINT = "last.pt"


@dataclass(frozen=True)
class RunKey:
    """What identifies a run in the store; the spec and recipe hashes are checked on top.

    Attributes:
        data: the data source's short name (``digits``, ``imagefolder-pets-1a2b3c``).
        recipe: the recipe's name, with a hash suffix when command-line overrides changed it.
        name: the step (for a roadmap prefix) or the ablation's name.
        seed: the training seed.
    """

    data: str
    recipe: str
    name: str
    seed: int

    def folder(self, root: Path) -> Path:
        """The run's folder under the store's root."""
        return Path(root) / self.data / self.recipe / self.name / f"seed{self.seed}"


def atomic_write(path: Path, write: Any, *, binary: bool = False) -> None:
    """Write a file through a temporary sibling and ``os.replace``.

    Args:
        path: the file to create or replace.
        write: a callable that writes the content into the open temporary file.
        binary: open the temporary file in binary mode.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """Atomically write a text file."""
    atomic_write(path, lambda handle: handle.write(text))


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically write a JSON file (indented, keys in insertion order)."""
    write_text(path, json.dumps(data, indent=2) + "\n")


def json_line(record: dict[str, Any]) -> str:
    """One record as a JSON line (newline included)."""
    return json.dumps(record) + "\n"


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line and flush it to disk."""
    with open(path, "a") as handle:
        handle.write(json_line(record))
        handle.flush()
        os.fsync(handle.fileno())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All complete JSON lines of a log (a torn last line from a crash is dropped)."""
    if not Path(path).exists():
        return []
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


def read_record(folder: Path) -> dict[str, Any] | None:
    """The finished record in a run folder, or None if there is none (or it is unreadable)."""
    try:
        return json.loads((Path(folder) / METRICS).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def find_record(folder: Path, spec_hash: str, recipe_hash: str) -> dict[str, Any] | None:
    """The record in ``folder`` if it was made with this exact spec and recipe."""
    record = read_record(folder)
    if record and record.get("spec_hash") == spec_hash and record.get("recipe_hash") == recipe_hash:
        return record
    return None


def set_aside(folder: Path) -> Path | None:
    """Move a finished record out of the way before its folder is reused (never delete it).

    Returns:
        Where the old folder went (``seed0.old-<spec hash>-<recipe hash>[-n]``), or None if
        the folder held no finished record.
    """
    record = read_record(folder)
    if record is None:
        return None
    stem = f"{Path(folder).name}.old-{record.get('spec_hash')}-{record.get('recipe_hash')}"
    target, n = Path(folder).with_name(stem), 1
    while target.exists():
        target, n = Path(folder).with_name(f"{stem}-{n}"), n + 1
    os.replace(folder, target)
    return target


def iter_records(root: Path) -> Iterator[dict[str, Any]]:
    """Every finished record under the store's root, in path order."""
    for path in sorted(Path(root).glob(f"*/*/*/seed*/{METRICS}")):
        if not path.parent.name.removeprefix("seed").isdigit():
            continue  # a set-aside older record
        record = read_record(path.parent)
        if record is not None:
            yield record


@contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on a run folder (released when the process ends, even by a crash).

    The lock is a sibling file (``seed0.lock``), so the folder itself can be set aside while
    the lock is held.

    Raises:
        RoadmapError: another process holds it.
    """
    lock = _lock_path(folder)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as handle:
        if not _try_lock(handle):
            raise RoadmapError(
                f"another run is writing {folder}; wait for it to finish or pass another --out"
            )
        yield


def is_locked(folder: Path) -> bool:
    """Whether another process is training into this folder right now."""
    if not _lock_path(folder).exists():
        return False
    try:
        with run_lock(folder):
            return False
    except RoadmapError:
        return True


def _lock_path(folder: Path) -> Path:
    return Path(folder).with_name(f"{Path(folder).name}.lock")


def _try_lock(handle: Any) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:  # pragma: no cover - Windows
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        return True
    except OSError:
        return False
