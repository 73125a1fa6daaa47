"""Start-up time of the command line: ``roadmap --help``, ``roadmap COMMAND --help``, and the
one-line error of a mistyped name or a spec file with a mistake.

A command line that takes seconds to print its help, or to say that a step name has a typo,
is one people stop exploring. The CLI imports torch, timm and fvcore only inside the commands
that need them, and names and spec files are checked by light modules before that (a block
kind's declaration imports no torch); this measures what that
buys: the wall time of each command, started as a fresh process the way a user starts it (the
console script of the running Python's environment), several times, with the median and
interquartile range, and how busy other work kept the machine meanwhile.

    python benchmarks/startup.py                 # writes results/benchmarks/startup.md
    python benchmarks/startup.py --runs 20

Target: every help, every typo's error and every spec mistake's <= 0.5 s on the project's
2-core CI machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from roadmap.measure import host
from roadmap.measure.latency import summarize
from roadmap.util import files

OUT = Path(__file__).resolve().parent.parent / "results" / "benchmarks" / "startup.md"
TARGET_S = 0.5
HELP = [[], ["steps"], ["build"], ["latency"], ["export"], ["table"], ["ablate"], ["plot"],
        ["explain"], ["walkthrough"], ["train"], ["eval"], ["run"]]  # fmt: skip
# Mistyped names: each must end in one "did you mean" line (exit code 2).
TYPOS = [
    ["explain", "seperate_mixers"],
    ["build", "--upto", "seperate_mixers"],
    ["train", "--data", "digit"],
    ["train", "--recipe", "quik"],
    ["build", "--size", "m1_6"],
]
# A spec file of each built-in roadmap with one mistake (block path, field, wrong value): each
# must end in one error line naming the file and the path (exit code 2).
SPEC_MISTAKES = {
    "repvit": ("stem.0", "kernel_size", 4),
    "convnext": ("stem.0", "stride", 3),
    "visformer": ("stages.0.blocks.0", "heads", 7),
}
SPEC_DIR = Path(tempfile.mkdtemp(prefix="roadmap-startup-"))
SPECS = [["build", "--spec", str(SPEC_DIR / f"{name}.json")] for name in SPEC_MISTAKES]
COMMANDS = [[*c, "--help"] for c in HELP] + TYPOS + SPECS


def write_specs() -> None:
    """The end of each roadmap as a spec file, one field of one block set wrong."""
    from roadmap.arch import registry

    for name, (where, key, value) in SPEC_MISTAKES.items():
        data = node = registry.build_spec(None, roadmap=name).to_dict()
        for part in where.split("."):
            node = node[int(part)] if part.isdigit() else node[part]
        (node if key in node else node["extra"])[key] = value
        (SPEC_DIR / f"{name}.json").write_text(json.dumps(data))


def script() -> str:
    """The ``roadmap`` console script installed beside this Python."""
    path = Path(sys.executable).parent / "roadmap"
    if not path.exists():
        raise SystemExit(f"no roadmap script beside {sys.executable}: pip install -e . first")
    return str(path)


def label(command: list[str]) -> str:
    """The command as the table shows it (a spec file by its name, not its temporary folder)."""
    return " ".join(Path(a).name if a.startswith(str(SPEC_DIR)) else a for a in command) or "(none)"


def time_once(args: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([script(), *args], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    expected = 2 if args in TYPOS + SPECS else 0
    says = "did you mean" if args in TYPOS else "error: "
    if done.returncode != expected or (expected and says not in done.stderr):
        raise SystemExit(f"roadmap {' '.join(args)}: exit {done.returncode}: {done.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per command")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    write_specs()
    for command in COMMANDS:  # warm the OS file cache, as for any second start
        time_once(command)
    samples: dict[str, list[float]] = {label(c): [] for c in COMMANDS}
    watch = host.CpuWatch()
    for _ in range(args.runs):  # interleaved: drift hits every command alike
        for command in COMMANDS:
            samples[label(command)].append(time_once(command))
    contention = watch.stop()
    lines = [
        "# Start-up time (`benchmarks/startup.py`)",
        "",
        f"`roadmap [COMMAND] --help`, mistyped names and spec files with a mistake (one error "
        f"line each), wall time of a fresh "
        f"process, {args.runs} runs each "
        f"(interleaved), on {host.cpu_name()} ({contention.cpu_count} CPUs), Python "
        f"{platform.python_version()}; {host.busy_note(contention)}.",
        "",
        "| command | median s | IQR s | max s |",
        "|---|---:|---:|---:|",
    ]
    for name, values in samples.items():
        p25, median, p75 = summarize(values)
        lines.append(f"| `{name}` | {median:.3f} | {p75 - p25:.3f} | {max(values):.3f} |")
    worst = max(statistics.median(v) for v in samples.values())
    verdict = "met" if worst <= TARGET_S else "NOT met"
    lines += ["", f"Target: every median <= {TARGET_S} s: {verdict} (slowest {worst:.3f} s).", ""]
    text = "\n".join(lines)
    files.write_text(args.out, text)
    print(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
