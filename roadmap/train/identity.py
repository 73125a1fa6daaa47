"""Which folder is this run: the one module that decides a training run's place in the store.

A run lives in ``<root>/<data>/<recipe label>/<network name>/seed<k>/``
(:class:`roadmap.results.store.RunKey` is that layout). Each part is decided here:

- data: the data source's short name (``digits``, ``imagefolder-pets-1a2b3c``);
- recipe label: the recipe's name, with its hash when command-line overrides changed a shipped
  recipe, and ``+pretrained-<timm model>`` or ``+init-<digest>`` when the run did not start from
  a fresh initialization (:func:`recipe_label`, :func:`start_label`), so a fine-tuned run never
  shares a folder with one trained from scratch; a distilled run adds where its teacher's
  weights came from (``+teacher-pretrained``, ``+teacher-file-<digest>``, ``+teacher-random``);
- network: :attr:`roadmap.arch.selection.Selection.name`;
- seed.

The spec and recipe hashes in each record are checked on top of the folder, so a folder never
passes off an older network or recipe as this one. :func:`legacy_names` lists the folder names
roadmap 0.1 gave a network, so that its runs are still found (and moved to today's name).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from roadmap.arch.selection import CUSTOM_PREFIX, Selection
from roadmap.interop.pretrained import reference
from roadmap.results.store import RunKey
from roadmap.train.distill import weights_label
from roadmap.train.recipe import Recipe, builtin_recipes, load_recipe, recipe_hash
from roadmap.train.run_options import RunOptions
from roadmap.train.sources import DataSource
from roadmap.util import files


def run_key(
    source: DataSource, recipe: Recipe, selection: Selection, options: RunOptions
) -> RunKey:
    """Where a run lives in the store; starting weights other than a fresh init are part of
    the recipe's label (``paper+pretrained-repvit_m0_9``), so a fine-tuned run never shares a
    folder with one trained from scratch."""
    start = start_label(options.pretrained, options.init, selection)
    label = recipe_label(recipe) + (f"+{start}" if start else "")
    if recipe.distillation != "none":  # a run taught by another teacher is another run
        teacher = weights_label(options.teacher_pretrained, options.teacher_checkpoint)
        label += f"+teacher-{teacher}"
    return RunKey(source.slug, label, selection.name, options.seed)


def recipe_label(recipe: Recipe) -> str:
    """The recipe's name in the results store: its own name, plus its hash when command-line
    overrides changed what a shipped recipe trains (``quick-6cd071824770``; a key that cannot
    change the weights, such as ``eval_every``, does not); a user's recipe file keeps its name
    (the hash in each record tells its versions apart)."""
    shipped = recipe.name in builtin_recipes()
    if shipped and recipe_hash(recipe) != recipe_hash(load_recipe(recipe.name)):
        return f"{recipe.name}-{recipe_hash(recipe)}"
    return recipe.name


def start_label(pretrained: bool, init: str | Path | None, selection: Selection) -> str | None:
    """How the starting weights enter the recipe label (so a fine-tuned run never shares a
    folder with one trained from scratch): ``pretrained-repvit_m0_9`` or ``init-<digest>``."""
    if pretrained:
        return f"pretrained-{reference(selection)}"
    if init is not None:
        return f"init-{files.digest(init, '--init')}"
    return None


def legacy_names(selection: Selection) -> list[str]:
    """Folder names earlier versions (0.1) gave this network, so their runs are still found.

    0.1 named a prefix by its last step (unchanged), an ordered subset
    ``LAST-without-A+B``, and anything else ``custom-<digest>``; it had no spec files, and knew
    one roadmap: the one whose networks keep bare names.
    """
    if not selection.roadmap.bare_names:
        return []
    paper = list(selection.roadmap.order)
    steps = list(selection.steps)
    if selection.start is not None or selection.size is not None or steps == paper[: len(steps)]:
        return []
    if all(s in paper for s in steps) and steps == sorted(steps, key=paper.index):
        missing = [s for s in paper[: paper.index(steps[-1]) + 1] if s not in steps]
        return [f"{steps[-1]}-without-{'+'.join(missing)}"]
    return [CUSTOM_PREFIX + hashlib.sha256(",".join(steps).encode()).hexdigest()[:8]]
