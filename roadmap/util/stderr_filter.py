"""Keep third-party runtimes' chatter off the user's terminal, without hiding their errors.

Native libraries (ExecuTorch's runtime, the profiler's Kineto) print diagnostics straight to
file descriptor 2, or through their Python bindings to ``sys.stderr``: probes of ARM-only
files, "profiler_start", a failed GPU count on a machine without one. :func:`filtered_stderr`
captures both for a block and passes on every line that is not known chatter.
"""

from __future__ import annotations

import io
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def filtered_stderr(drop: re.Pattern[str]) -> Iterator[None]:
    """Capture stderr for the block, both file descriptor 2 (what C++ prints) and ``sys.stderr``
    (where the runtime's Python bindings send its log), then pass on the lines that do not match
    ``drop``."""
    sys.stderr.flush()
    saved_fd, saved_stream = os.dup(2), sys.stderr
    python_side = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as native_side:
        os.dup2(native_side.fileno(), 2)
        sys.stderr = python_side
        try:
            yield
        finally:
            sys.stderr = saved_stream
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            native_side.seek(0)
            text = native_side.read().decode(errors="replace") + python_side.getvalue()
            kept = [line for line in text.splitlines(keepends=True) if not drop.search(line)]
            if kept:
                sys.stderr.write("".join(kept))
