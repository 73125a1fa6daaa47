"""The exceptions meant for people, and the exit codes the CLI gives them.

Anything raised as :class:`RoadmapError` is printed by the CLI as a single line (no traceback,
exit code 2). Library code raises it for bad input a user can fix: an unknown step name, a
precondition a step needs, an unreadable file, a checkpoint from another step.

:class:`Stopped` is not an error: a training run that was asked to stop (Ctrl-C, SIGTERM) and
left a checkpoint to resume from. The CLI prints its message and exits with its own code, so a
scheduler can tell "stopped, resumable" from "failed".
"""

EXIT_USAGE = 2  # a RoadmapError: bad input, one line on stderr
EXIT_INTERRUPTED = 130  # stopped by Ctrl-C (128 + SIGINT), last.pt saved
EXIT_TERMINATED = 143  # stopped by SIGTERM (128 + SIGTERM), last.pt of the last full epoch kept


class RoadmapError(Exception):
    """A problem with the user's input, phrased so that it says what to do about it."""


class PreconditionError(RoadmapError):
    """A step was applied to a spec that lacks what it changes (names the missing step)."""


class Stopped(Exception):
    """A run stopped on request after saving what it had; resume it with ``--resume``.

    Attributes:
        exit_code: ``EXIT_INTERRUPTED`` (Ctrl-C) or ``EXIT_TERMINATED`` (SIGTERM).
    """

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
