"""What a roadmap notebook's code cells call: everything measured, measured when the cell runs.

A notebook written by :mod:`roadmap.teach.notebook` holds what the code decides (lessons, spec
diffs, diagrams, the exercises' questions and their answers worked out from counts) as text,
and everything that depends on the machine (latency, training, the plot) as calls into a
:class:`Session`. Each call returns an object Jupyter shows as Markdown or PNG (``print`` gives
its text), so the same cell works in a notebook, a console and a test.

The session notices a CUDA device and uses it for latency and training. Its budget (``full``
or ``tiny``, also set by the ``ROADMAP_NOTEBOOK_BUDGET`` environment variable: CI runs the
notebooks with ``tiny``) decides how many latency iterations and training epochs a call spends.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from roadmap.arch.builder import build
from roadmap.arch.reparam import fuse
from roadmap.arch.roadmaps import Roadmap, get_roadmap
from roadmap.arch.selection import Selection
from roadmap.errors import RoadmapError
from roadmap.measure import counts as counting
from roadmap.measure.latency import LatencySettings
from roadmap.report import study_table
from roadmap.report.plot import plot_study
from roadmap.study import comparison, plan
from roadmap.study.runs import train_runs
from roadmap.teach import lesson
from roadmap.train.identity import recipe_label
from roadmap.train.recipe import load_recipe
from roadmap.train.run_options import RunOptions

BUDGET_ENV = "ROADMAP_NOTEBOOK_BUDGET"


@dataclass(frozen=True)
class Budget:
    """How much a notebook's cells spend.

    Attributes:
        name: ``full`` (what a student runs) or ``tiny`` (CI: every cell runs, nothing is a
            figure).
        warmup: untimed latency iterations per network.
        iters: timed latency iterations per network (interleaved rounds).
        epochs: training epochs (None: the recipe's).
        train_subset: training images (None: the recipe's, all of them for ``quick``).
        img_size: the resolution latency and MACs are measured at (the paper's 224, or 64
            to make the tiny budget cheap).
    """

    name: str
    warmup: int
    iters: int
    epochs: int | None
    train_subset: int | None
    img_size: int = 224


BUDGETS = {
    "full": Budget("full", warmup=3, iters=20, epochs=None, train_subset=None),
    "tiny": Budget("tiny", warmup=1, iters=2, epochs=1, train_subset=100, img_size=64),
}


@dataclass
class Shown:
    """Markdown that Jupyter renders and ``print`` shows as text."""

    text: str

    def _repr_markdown_(self) -> str:
        return self.text

    def __str__(self) -> str:
        return self.text


@dataclass
class Picture:
    """A PNG file that Jupyter shows inline."""

    path: Path

    def _repr_png_(self) -> bytes:
        return self.path.read_bytes()

    def __str__(self) -> str:
        return f"the roadmap plot: {self.path}"


class Session:
    """One roadmap, taught in a notebook: the study measured once, then read by the cells.

    Args:
        roadmap: the roadmap (a name or a :class:`~roadmap.arch.roadmaps.Roadmap`).
        upto: teach the roadmap up to this step (default: all of it).
        budget: ``full`` or ``tiny`` (default: ``$ROADMAP_NOTEBOOK_BUDGET``, else ``full``).
        results: the results store the short trainings write to and read from (a folder
            beside the notebook by default, so that ``roadmap table`` run there finds them).
        data: the data source the short trainings use (the bundled ``digits``: no download).
        recipe: the recipe they use (``quick``: 32 px; the budget may shorten it).
    """

    def __init__(
        self,
        roadmap: Roadmap | str,
        upto: str | None = None,
        *,
        budget: str | None = None,
        results: str | Path = "results",
        data: str = "digits",
        recipe: str = "quick",
    ) -> None:
        self.roadmap = get_roadmap(roadmap)
        self.network = Selection.of(self.roadmap, upto)
        name = budget or os.environ.get(BUDGET_ENV, "full")
        if name not in BUDGETS:
            raise RoadmapError(f"budget {name!r}: use one of {', '.join(BUDGETS)}")
        self.budget = BUDGETS[name]
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.results = Path(results)
        self.data = data
        self.recipe = load_recipe(
            recipe,
            epochs=self.budget.epochs,
            settings=[f"train_subset={n}" for n in [self.budget.train_subset] if n],
        )
        self._study: comparison.Study | None = None
        self._trained: list[str] = []

    # --- what the session is --------------------------------------------------------------

    @property
    def latency(self) -> LatencySettings:
        """How latency is measured: the fused network, batch 1 at the budget's resolution (224
        px), on this device."""
        return LatencySettings(
            device=self.device,
            warmup=self.budget.warmup,
            iters=self.budget.iters,
            img_size=self.budget.img_size,
        )

    def _repr_markdown_(self) -> str:
        where = (
            torch.cuda.get_device_name()
            if self.device == "cuda"
            else (f"the CPU, {torch.get_num_threads()} torch threads")
        )
        tiny = (
            " (CI's budget: every cell runs, no number is a figure)"
            if (self.budget.name == "tiny")
            else ""
        )
        return (
            f"**{self.roadmap.title}**, {len(self.network.steps)} steps; measuring on {where}; "
            f"budget `{self.budget.name}`{tiny}: {self.budget.iters} timed latency iterations "
            f"per network at {self.budget.img_size} px, training "
            f"`{recipe_label(self.recipe)}` on `{self.data}` into `{self.results}/`."
        )

    __str__ = _repr_markdown_

    # --- the study ------------------------------------------------------------------------

    def study(self) -> comparison.Study:
        """Every step's network counted and timed, interleaved (measured on the first call)."""
        if self._study is None:
            self._study = comparison.collect(
                plan.prefixes(self.network),
                latency_settings=self.latency,
                img_size=self.budget.img_size,
            )
        return self._study

    def measure(self) -> Shown:
        """The whole roadmap as a table: sizes, latency measured now, the paper's numbers."""
        table = study_table.study_markdown(self.study(), "Every step, measured here", paper=True)
        return Shown(table)

    def numbers(self, step: str) -> Shown:
        """One step's numbers: the network before it and after it, and the change."""
        les = lesson.lesson(step, self.roadmap, rows=self.study().rows, parts=False)
        return Shown(lesson.numbers_markdown(les))

    # --- training -------------------------------------------------------------------------

    def train(self, steps: list[str] | None = None) -> Shown:
        """Train these steps' networks briefly (default: the first and the last); what the
        results folder already holds is not trained again."""
        names = steps or [self.network.steps[0], self.network.steps[-1]]
        selections = [Selection.of(self.roadmap, name) for name in names]
        self._trained = names
        options = RunOptions(device=self.device, quiet=True, results=self.results)
        lines = []
        for selection in selections:
            start = time.perf_counter()
            (outcome,) = train_runs(plan.runs([selection], (0,)), self.data, self.recipe, options)
            took = {
                "trained": f"{time.perf_counter() - start:.0f} s",
                "stored": "already in the results folder",
                "busy": "being trained by another process",
            }[outcome.status]
            top1 = f"{outcome.record.top1:.1f} %" if outcome.record else "—"
            lines.append(f"| `{selection.name}` | {top1} | {took} |")
        return Shown(
            "\n".join(
                [
                    f"Trained on `{self.data}` with `{recipe_label(self.recipe)}` "
                    f"({self.recipe.epochs} epochs at {self.recipe.img_size} px), on "
                    f"{self.device}:",
                    "",
                    "| network | top-1 | time |",
                    "|---|---:|---:|",
                    *lines,
                ]
            )
        )

    def table(self, steps: list[str] | None = None) -> Shown:
        """The networks trained (default: those :meth:`train` trained, else every step) with
        the accuracy the results folder holds for this recipe, and the differences."""
        label = recipe_label(self.recipe)
        names = steps or self._trained
        chosen = [plan.variant(Selection.of(self.roadmap, n)) for n in names]
        rows = comparison.collect(
            chosen or plan.prefixes(self.network),
            results=self.results,
            data=self.data,
            recipe=label,
            img_size=self.budget.img_size,
        )
        return Shown(study_table.study_markdown(rows, f"Trained here: {self.data}, {label}"))

    def plot(self) -> Picture:
        """The roadmap figure of the measured study (the paper's trajectory beside ours)."""
        out = Path(tempfile.mkdtemp(prefix="roadmap-notebook-")) / "roadmap.png"
        return Picture(plot_study(self.study(), out))

    # --- exercises ------------------------------------------------------------------------

    def ablate(self, skip: str, upto: str | None = None) -> Shown:
        """A network (default: the session's whole one) beside the same network without one
        step, counted and timed interleaved."""
        full = Selection.of(self.roadmap, upto or self.network.steps[-1])
        without = Selection.of(self.roadmap, full.steps[-1], skip=[skip])
        study = comparison.collect(
            [plan.variant(full), plan.variant(without)],
            latency_settings=self.latency,
            img_size=self.budget.img_size,
        )
        return Shown(study_table.study_markdown(study, f"Without `{skip}`, measured here"))

    def fused(self, step: str | None = None) -> Shown:
        """Training form against deploy form: parameters, and how far the outputs move."""
        selection = Selection.of(self.roadmap, step or self.network.steps[-1])
        model = build(selection.spec()).eval()
        deployed = fuse(model)
        torch.manual_seed(0)
        size = self.budget.img_size
        x = torch.randn(4, 3, size, size)
        with torch.inference_mode():
            a, b = model(x), deployed(x)
        moved = (a - b).abs().max().item()
        spread = (a.max() - a.min()).item()
        trained, deploy = counting.count_params(model), counting.count_params(deployed)
        return Shown(
            f"`{selection.name}`: {trained:,} parameters to train, {deploy:,} deployed "
            f"({deploy - trained:+,}). On 4 random images the deployed network's logits differ "
            f"from the training form's by at most {moved:.1e}, {moved / spread:.1e} of their "
            f"range ({spread:.2e}; random weights give small logits)."
        )
