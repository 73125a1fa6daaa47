"""Every file the tool writes goes through here: whole or not at all, with normal permissions.

A file (or a directory, such as a Core ML ``.mlpackage``) is first written under a temporary
sibling name and then moved into place with ``os.replace``, which is atomic: a reader, a crash,
Ctrl-C or ``kill -9`` leaves the old file or the new one, never half of one.

Temporary names start with :data:`TEMP_MARK` and carry the writer's host and process id
(``.roadmap-tmp-<token>-<pid>-<host>-<name>``), so they are easy to recognize. A write that
fails removes its temporary file; one that was killed leaves it behind, and the next write of
the same file (or the next run in the same run folder, see :func:`remove_stale`) removes it
once its writer is gone.

Files are created with mode ``0o666`` minus the process umask, like any program's files (not
the owner-only ``0o600`` that ``tempfile.mkstemp`` gives).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from roadmap.errors import RoadmapError

TEMP_MARK = ".roadmap-tmp-"
# A write that fails with less than this free beside it ran out of space, whatever the writer
# says (torch's zip writer reports a full disk as "[enforce fail ...] unexpected pos").
FULL_BYTES = 1 << 20
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def temp_sibling(target: Path) -> Path:
    """A fresh temporary name beside ``target`` that ends with ``target``'s own name (so a
    writer that infers the format from the suffix still sees the right one)."""
    token = secrets.token_hex(4)
    return target.with_name(f"{TEMP_MARK}{token}-{os.getpid()}-{_HOST}-{target.name}")


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write ``target``'s new content to; move it into place after.

    On any failure (an exception, Ctrl-C) the temporary file or directory is removed and the
    old ``target`` is left as it was.

    Raises:
        RoadmapError: the folder cannot be created or written (the message names the path).
    """
    target = Path(target)
    make_dirs(target.parent)
    tmp = temp_sibling(target)
    try:
        yield tmp
        _replace(tmp, target)
    except BaseException as e:
        full = isinstance(e, Exception) and _disk_full(target.parent, e)
        _remove(tmp)
        if full:
            raise RoadmapError(
                f"no space left on {mount_point(target.parent)} while writing {target}"
            ) from None
        if isinstance(e, OSError):
            raise RoadmapError(f"cannot write {target}: {e.strerror or e}") from None
        raise
    remove_stale(target.parent, name=target.name)


def _disk_full(folder: Path, error: Exception) -> bool:
    """Whether a failed write ran out of space (told by errno, or by the space left)."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return False
    # a pseudo file system (/proc, /sys) reports no size at all: it is not full, it refuses
    return usage.total > 0 and usage.free < FULL_BYTES


def mount_point(folder: Path) -> Path:
    """The mount point of the file system ``folder`` is on (the "device" a user can free)."""
    path = Path(folder).resolve()
    while path != path.parent and os.stat(path.parent).st_dev == os.stat(path).st_dev:
        path = path.parent
    return path


def write_with(target: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Atomically write ``target`` through ``write(handle)`` on a binary file handle."""
    with atomic_path(target) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())


def write_bytes(target: str | Path, data: bytes) -> None:
    """Atomically write bytes."""
    write_with(target, lambda handle: handle.write(data))


def write_text(target: str | Path, text: str) -> None:
    """Atomically write UTF-8 text."""
    write_bytes(target, text.encode("utf-8"))


def write_json(target: str | Path, data: Any) -> None:
    """Atomically write JSON (indented, keys in insertion order, a final newline)."""
    write_text(target, json.dumps(data, indent=2) + "\n")


def make_dirs(folder: Path) -> None:
    """``mkdir -p`` with a one-line error that names the folder."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RoadmapError(f"cannot create folder {folder}: a file of that name exists") from None
    except OSError as e:
        raise RoadmapError(f"cannot create folder {folder}: {e.strerror or e}") from None


def remove_stale(folder: Path, *, name: str | None = None, everything: bool = False) -> list[Path]:
    """Remove temporary files left in ``folder`` by writers that were killed.

    Args:
        folder: where to look.
        name: only temporaries of this target name.
        everything: remove all of them, whoever wrote them, and every other name that starts
            with our mark (the debris of an older version, a copy renamed by hand): for a
            caller that holds the folder's lock, so no other writer can be at work there.

    Returns:
        What was removed.
    """
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for path in entries:
        parsed = _parse_temp(path.name)
        ours = path.name.startswith(TEMP_MARK)
        if everything and ours and parsed is None:
            _remove(path)
            removed.append(path)
            continue
        if parsed is None or (name is not None and parsed[2] != name):
            continue
        pid, host, _ = parsed
        if everything or (host == _HOST and not _alive(pid)):
            _remove(path)
            removed.append(path)
    return removed


def _parse_temp(filename: str) -> tuple[int, str, str] | None:
    """(pid, host digest, target name) of a temporary name, or None for any other name."""
    if not filename.startswith(TEMP_MARK):
        return None
    parts = filename[len(TEMP_MARK) :].split("-", 3)
    if len(parts) != 4 or not parts[1].isdigit():
        return None
    return int(parts[1]), parts[2], parts[3]


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _replace(tmp: Path, target: Path) -> None:
    """Move ``tmp`` onto ``target``; a directory target is swapped out, then removed."""
    if tmp.is_dir() and target.is_dir():
        old = temp_sibling(target)
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def _remove(path: Path) -> None:
    """Remove a file or directory, never raising (this runs while another error unwinds)."""
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def digest(path: str | Path, option: str) -> str:
    """The first 8 hex digits of a file's SHA-256: how a run's folder label names weights
    given as a file (``--init``, ``--teacher-checkpoint``, the option named in the error)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:8]
    except OSError as e:
        raise RoadmapError(f"{option}: cannot read {path}: {e.strerror}") from None
