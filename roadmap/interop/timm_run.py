"""Run one of timm's scripts unchanged, with the roadmap models registered.

timm's ``train.py``, ``validate.py`` and ``benchmark.py`` only know the models registered in
the process that runs them; this registers ``roadmap_<step>`` and then runs the script as
``__main__`` with the remaining arguments::

    python -m roadmap.interop.timm_run path/to/timm/validate.py /data/imagenet --model roadmap_gelu
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

from roadmap.interop.timm_models import register_timm_models

USAGE = "usage: python -m roadmap.interop.timm_run SCRIPT.py [script arguments...]"


def main(argv: list[str] | None = None) -> None:
    """Run ``argv[0]`` as a script with ``argv[1:]`` as its arguments."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or not argv[0].endswith(".py"):
        print(USAGE, file=sys.stderr)
        raise SystemExit(2)
    if not Path(argv[0]).is_file():
        print(f"error: script not found: {argv[0]}", file=sys.stderr)
        raise SystemExit(2)
    register_timm_models()
    sys.argv = list(argv)
    runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
