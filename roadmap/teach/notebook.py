"""A roadmap as a Jupyter notebook: ``roadmap notebook --out FILE.ipynb``.

The notebook is written from the sources ``roadmap explain`` and ``roadmap walkthrough`` use
(:mod:`roadmap.teach.lesson`): each step's lesson, spec diff, diagrams (inline SVG) and blocks
before and after are its text, so they read the same without running anything (on the
documentation site, for one). Everything that depends on the machine is a code cell calling
:class:`roadmap.teach.session.Session`: the study's sizes and latency, each step's numbers, a
short training on the bundled digits, the roadmap plot, and the exercises' measurements.

The exercises ask for a prediction before the cell runs; their answers, folded away, are worked
out here from the code (counts of the networks involved) and the paper's numbers, never from
a measurement, so that writing the notebook twice gives the same file (a test regenerates the
committed notebooks and fails when one is out of date).
"""

from __future__ import annotations

from pathlib import Path

from roadmap.arch import registry
from roadmap.arch.builder import build
from roadmap.arch.roadmaps import Roadmap, get_roadmap
from roadmap.arch.selection import Selection
from roadmap.arch.spec import spec_hash
from roadmap.errors import RoadmapError
from roadmap.measure import counts as counting
from roadmap.measure.counts import Counts
from roadmap.teach import html_page, lesson
from roadmap.teach.session import BUDGET_ENV
from roadmap.util import files


def write_notebook(out: Path, roadmap: Roadmap | str, upto: str | None = None) -> Path:
    """Write the roadmap's notebook to ``out`` (an ``.ipynb``; written whole or not at all)."""
    out = Path(out)
    if out.suffix != ".ipynb":
        raise RoadmapError(f"{out}: a notebook is an .ipynb file")
    files.write_text(out, notebook_json(roadmap, upto))
    return out


def notebook_json(roadmap: Roadmap | str, upto: str | None = None) -> str:
    """The notebook in Jupyter's format 4 (nbformat: built, validated and written by it), the
    same bytes for the same code: cell ids are numbered, not random."""
    import nbformat

    made = cells(roadmap, upto)
    for i, cell in enumerate(made):
        cell["id"] = f"cell-{i}"
    nb = nbformat.v4.new_notebook(
        cells=made,
        metadata={
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
    )
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def _md(text: str) -> dict:
    import nbformat

    return nbformat.v4.new_markdown_cell(text.strip("\n"))


def _code(text: str) -> dict:
    import nbformat

    return nbformat.v4.new_code_cell(text.strip("\n"))


def cells(roadmap: Roadmap | str, upto: str | None = None) -> list[dict]:
    """Every cell: introduction, set-up, the measured study, one lesson and its numbers per
    step, a short training, the plot, exercises."""
    road = get_roadmap(roadmap)
    network = Selection.of(road, upto)
    upto_arg = f", upto={network.steps[-1]!r}" if upto else ""
    out = [
        _md(_introduction(road, network)),
        _md(_SETUP),
        _code(
            "import importlib.util\n"
            "import warnings\n\n"
            'if importlib.util.find_spec("roadmap") is None:\n'
            "    raise ModuleNotFoundError(\n"
            '        "roadmap is not installed in this kernel\'s Python: in a checkout of the "\n'
            '        "repository run  %pip install -e .  then restart the kernel"\n'
            "    )\n"
            "# timm imports tqdm.auto, which warns where ipywidgets is missing: not ours to fix\n"
            'warnings.filterwarnings("ignore", message="IProgress not found")\n\n'
            "from roadmap.teach.session import Session\n\n"
            f"session = Session({road.name!r}{upto_arg})\n"
            "session"
        ),
        _md(
            "## The whole roadmap, measured here\n\n"
            "Every step's network is built, fused and counted, and all of them are timed in "
            "interleaved rounds (one forward pass each per round, batch 1 at 224 px), so that "
            "a machine that slows down slows them all alike. The paper's columns are the "
            "paper's; the table's last lines say what the latency was measured under."
        ),
        _code("session.measure()"),
    ]
    for name in network.steps:
        les = lesson.lesson(name, road, measure=False)
        text = lesson.lesson_markdown(les, image=html_page.svg_data, numbers=False)
        out += [_md(text), _code(f"session.numbers({name!r})")]
    out += [
        _md(_TRAINING.format(first=network.steps[0], last=network.steps[-1])),
        _code("session.train()"),
        _code("session.table()"),
        _md(
            "## The roadmap plot\n\n"
            "The paper's trajectory beside this machine's: where the paper measured speed, "
            "its latency against its accuracy; here, each step's latency change."
        ),
        _code("session.plot()"),
        _md("## Exercises\n\nWrite your prediction down before you run each cell."),
    ]
    for question, code, answer in exercises(road, network):
        out += [_md(question), _code(code), _md(_folded(answer))]
    return out


def _introduction(road: Roadmap, network: Selection) -> str:
    return (
        f"# {lesson.walkthrough_title(road)}\n\n"
        f"The paper ({road.citation}) goes from {road.title.replace(' -> ', ' to ')} one "
        "design change at a time. This notebook walks the same way with `roadmap`: for each "
        "step its lesson, what it changes in the network's spec, the changed part drawn before "
        "and after, and its size and latency measured on your machine; then a short training "
        "on the bundled digits, the roadmap plot, and exercises.\n\n"
        f"It was written by `roadmap notebook{road.option()}` from the code that builds each "
        f"step (`{network.steps[0]}` to `{network.steps[-1]}`), so every diff and diagram is "
        "what the code does. The paper's numbers are the paper's; every other number is "
        "measured when you run its cell. Run it top to bottom (Run All), then change things "
        "and run them again."
    )


_SETUP = f"""
## Before you start

This notebook needs the `roadmap` package in the kernel's Python. From a checkout of the
repository: `pip install -e .` (with a CPU-only PyTorch on a machine without a GPU: see the
project's README), then `pip install -e ".[notebook]"` for Jupyter itself. The next cell
checks it and starts a session; it uses a CUDA GPU when PyTorch sees one.

Environment variable `{BUDGET_ENV}=tiny` makes every cell cheap (2 latency
iterations at 64 px, one epoch on 100 images): that is how the tests run this notebook. Its
numbers are then not figures.
"""

_TRAINING = """
## Train it briefly

The networks at both ends, `{first}` and `{last}`, trained on scikit-learn's bundled digits
(1,797 8×8 images of handwritten digits, upsampled to 32 px) with the `quick` recipe. This is
not the paper's experiment (ImageNet, 300 epochs), and a network this size learns the digits
almost perfectly either way: it shows the training loop at work on your machine. The runs go to
a `results/` folder beside the notebook; a run that is already there is not trained again, and
`roadmap table --data digits --recipe quick` run in that folder shows the same table. The
studies this project measured for you, with seeds and confidence intervals, are on the
roadmap's page of the documentation.
"""


def _folded(answer: str) -> str:
    summary = "<summary>Answer (open it after you ran the cell)</summary>"
    return f"<details>{summary}\n\n{answer}\n\n</details>"


# --- exercises ----------------------------------------------------------------------------


def _count(selection: Selection) -> Counts:
    """The network's counts, training and deployed form (MACs of the deployed one only)."""
    return counting.count(build(selection.spec()), train_macs=False)


def exercises(road: Roadmap, network: Selection) -> list[tuple[str, str, str]]:
    """(question, code, answer) for each exercise: leave one step out, and fuse."""
    found = []
    last = network.steps[-1]
    full = _count(network)
    skip = _step_to_skip(road, network)
    if skip is not None:
        name, target, with_it, without = skip
        step = registry.get_step(name, road)
        upto = "" if target == last else f", upto={target!r}"
        found.append(
            (
                f"### Leave `{name}` out\n\n"
                f"`{name}` ({step.title}). Take it out of the network up to `{target}`: on "
                "this machine, is the network without it faster or slower, and by roughly how "
                "much? Is it the way the MACs go?",
                f"session.ablate({name!r}{upto})",
                _skip_answer(road, name, with_it, without),
            )
        )
    found.append(
        (
            f"### Fuse `{last}`\n\n"
            "For deployment `roadmap` folds every BatchNorm into the convolution next to it and "
            "every re-parameterized branch into one convolution. Predict: does the deployed "
            f"`{last}` have fewer parameters, and do its outputs change?",
            f"session.fused({last!r})",
            _fuse_answer(full),
        )
    )
    return found


def _step_to_skip(road: Roadmap, network: Selection) -> tuple[str, str, Counts, Counts] | None:
    """(step, network it is left out of, that network counted with it and without it).

    The step is the one whose paper column moved most (the roadmap's speed, else its cost), or
    where the paper reports neither, the latest step; it is left out of the whole network, or
    of the network before the last step where the last step rebuilds everything the step
    changed (Visformer-S is written whole); an ablation that does not build is passed over.
    """
    side = [road.side_of(Selection.of(road, s).paper) for s in network.steps]
    candidates = list(network.steps[1:])
    if sum(v is not None for v in side) >= 2:
        change = {
            s: abs(b - a)
            for s, a, b in zip(candidates, side, side[1:], strict=False)
            if a is not None and b is not None
        }
        candidates.sort(key=lambda s: -change.get(s, -1.0))
    else:
        candidates.reverse()
    for target in dict.fromkeys(network.steps[-1:] + network.steps[-2:-1]):
        if target == network.steps[0]:
            continue
        upto = Selection.of(road, target)
        for name in candidates:
            if name not in upto.steps or name == target:
                continue
            try:
                without = Selection.of(road, target, skip=[name])
                if spec_hash(without.spec()) == spec_hash(upto.spec()):
                    continue  # a later step writes over what this one changed
                return name, target, _count(upto), _count(without)
            except RoadmapError:  # a later step needs it: the ablation does not build
                continue
    return None


def _skip_answer(road: Roadmap, name: str, full: Counts, without: Counts) -> str:
    d_macs = (without.deploy_macs - full.deploy_macs) / 1e6
    d_params = without.deploy_params - full.deploy_params
    text = (
        f"Without `{name}` the deployed network has {without.deploy_params:,} parameters and "
        f"{without.deploy_macs / 1e6:,.1f} M MACs, against {full.deploy_params:,} and "
        f"{full.deploy_macs / 1e6:,.1f} M with it ({d_params:+,} parameters, {d_macs:+,.1f} M "
        "MACs). "
    )
    prev = Selection.of(road, name).before_last_step()
    paper = road.side, road.side_of(Selection.of(road, name).paper)
    before = road.side_of(prev.paper) if prev is not None else None
    if paper[0] is not None and paper[1] is not None and before is not None:
        col = paper[0]
        text += (
            f"The paper reports the step as {before:g} → {paper[1]:g} {col.unit} "
            f"({col.label}, {col.conditions}). "
        )
    return text + (
        "Whether your machine agrees is what the cell measured: MACs are not latency, and a "
        "CPU, a GPU and a phone's accelerator each reward different layers (memory traffic, "
        "kernel launches, what fuses). A difference the table marks ≈ is within the noise of "
        "this measurement: run the cell again, or with more iterations, before you believe it."
    )


def _fuse_answer(full: Counts) -> str:
    d = full.deploy_params - full.params
    if d < 0:
        size = f"{-d:,} fewer parameters ({full.params:,} → {full.deploy_params:,})"
        why = (
            "each BatchNorm's scale and shift (and each parallel branch) is folded into the "
            "convolution's weights and bias"
        )
    elif d > 0:
        size = f"{d:,} more parameters ({full.params:,} → {full.deploy_params:,})"
        why = (
            "a BatchNorm that comes before a convolution folds into it too, but its shift "
            "then becomes a bias the convolution did not have: more numbers stored, less "
            "work done"
        )
    else:
        size = "exactly as many parameters: nothing in it folds"
        why = "no BatchNorm sits next to a convolution and no block has parallel branches"
    return (
        f"It has {size}: {why}. The outputs do not change beyond float32 rounding (about a "
        "millionth of the logits' spread): folding is algebra, not an approximation, and the "
        "tests hold fused = unfused at every step of every roadmap."
    )
