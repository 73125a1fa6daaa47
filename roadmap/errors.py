"""The one exception type meant for people.

Anything raised as :class:`RoadmapError` is printed by the CLI as a single line (no traceback,
exit code 2). Library code raises it for bad input a user can fix: an unknown step name, a
precondition a step needs, an unreadable file, a checkpoint from another step.
"""


class RoadmapError(Exception):
    """A problem with the user's input, phrased so that it says what to do about it."""
