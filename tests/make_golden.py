"""Regenerate tests/golden/counts.json: params and MACs of every step and of the paper's control.

Run ``python tests/make_golden.py`` after an intended architecture change, then review the diff
of the JSON in the commit: every changed number is an architecture change somebody chose.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import roadmap
from roadmap.measure.counts import MACS_UNIT, count
from roadmap_steps.repvit import CONTROL

GOLDEN = Path(__file__).parent / "golden" / "counts.json"


def golden_cases() -> dict[str, list[str]]:
    """Name -> resolved step list, for every roadmap prefix and the paper's control."""
    cases = {
        name: roadmap.resolve_steps(name, roadmap="repvit") for name in roadmap.list_steps("repvit")
    }
    cases["control:" + ",".join(CONTROL)] = list(CONTROL)
    return cases


def measure(steps: list[str]) -> dict[str, int | str]:
    spec = roadmap.build_spec(steps=steps, roadmap="repvit")
    return {"spec_hash": roadmap.spec_hash(spec), **count(roadmap.build(spec), 224).to_dict()}


def main() -> int:
    data = {
        "_about": f"params and {MACS_UNIT} at 224x224, 1000 classes; written by "
        "tests/make_golden.py",
        **{name: measure(steps) for name, steps in golden_cases().items()},
    }
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {GOLDEN} ({len(data) - 1} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
