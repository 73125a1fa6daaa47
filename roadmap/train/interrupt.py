"""Stopping a training run on request, without losing work.

- **Ctrl-C (SIGINT)**, first press: the current epoch finishes, ``last.pt`` is saved, and the
  run stops (exit code 130). A second press stops at once, keeping the previous epoch's
  ``last.pt``.
- **SIGTERM** (what ``timeout``, SLURM, Kubernetes and ``kill`` send before killing): the run
  abandons the current epoch at the next training step, keeps the ``last.pt`` of the last
  finished epoch (never a half-written one), and stops with exit code 143. A scheduler's grace
  period is usually shorter than an epoch, so finishing the epoch is not attempted.

Either way ``roadmap train --resume`` (or ``roadmap run`` again) continues from the last
finished epoch and ends with the same metrics as an uninterrupted run.

The handlers belong to the program, not to the library: the ``train`` and ``run`` commands and
a cluster job enter :func:`graceful_stop` around their work, and the training loop reads the
request of the innermost such block (:func:`current`). Code that calls the library without one
(a test suite, a notebook, a script) keeps Python's own Ctrl-C: ``KeyboardInterrupt`` at once,
with the last finished epoch's ``last.pt`` on disk.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from roadmap.errors import EXIT_INTERRUPTED, EXIT_TERMINATED


@dataclass
class StopRequest:
    """What the signal handlers were asked for.

    Attributes:
        after_epoch: stop once the current epoch is saved (Ctrl-C).
        now: stop at the next step, abandoning the epoch (SIGTERM).
    """

    after_epoch: bool = False
    now: bool = False

    @property
    def exit_code(self) -> int:
        return EXIT_TERMINATED if self.now else EXIT_INTERRUPTED


_ACTIVE: list[StopRequest] = []  # the requests of the graceful_stop blocks now open
_PRESSES = [0]  # Ctrl-C presses the handlers below took, in this process


def presses() -> int:
    """How many Ctrl-C presses a command has taken in this process (a :func:`graceful_stop`
    block, or the command line turning a ``KeyboardInterrupt`` into exit 130): a caller that
    runs commands in-process (a test suite) learns that the user pressed Ctrl-C even though
    the command took the press and ended as asked."""
    return _PRESSES[0]


def pressed() -> None:
    """Count a Ctrl-C press a command took (see :func:`presses`)."""
    _PRESSES[0] += 1


def current() -> StopRequest:
    """What the innermost :func:`graceful_stop` block was asked for; outside one, a request
    that nothing ever sets (signals keep their usual effect)."""
    return _ACTIVE[-1] if _ACTIVE else StopRequest()


@contextmanager
def graceful_stop(announce: bool = True) -> Iterator[StopRequest]:
    """Install the Ctrl-C and SIGTERM handlers for the block (restored afterwards).

    Args:
        announce: say on stderr what a first Ctrl-C does (a worker process whose parent
            already says it stays silent).
    """
    request = StopRequest()

    def on_sigint(signum: int, frame: Any) -> None:
        _PRESSES[0] += 1
        request.after_epoch = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second press: stop now
        if announce:
            print(
                "\nfinishing this epoch and saving last.pt; Ctrl-C again to stop now",
                file=sys.stderr,
            )

    def on_sigterm(signum: int, frame: Any) -> None:
        request.now = True

    try:
        previous = {
            signal.SIGINT: signal.signal(signal.SIGINT, on_sigint),
            signal.SIGTERM: signal.signal(signal.SIGTERM, on_sigterm),
        }
    except ValueError:  # not the main thread: keep the default behaviour
        yield request
        return
    _ACTIVE.append(request)
    try:
        yield request
    finally:
        _ACTIVE.remove(request)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def ignore_in_workers(worker_id: int) -> None:
    """A data-loader worker leaves Ctrl-C to the training process, which finishes its epoch and
    stops the workers in order. SIGTERM keeps its default action in a worker: the process that
    created it must be able to terminate it (Python's exit does so); when a scheduler signals
    the whole process group, the training process abandons the epoch anyway."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
