"""Checkpoints: ``last.pt`` written whole after every epoch, read back safely, checked to fit.

A checkpoint is a plain dict of tensors and JSON-like values, so it loads with
``torch.load(weights_only=True)`` (no pickled code runs). It names the network it holds (steps,
selection name, spec hash), the recipe and seed, and carries the per-epoch log lines of every
epoch it contains: the epoch log is rewritten from it, so the log can never claim an epoch the
checkpoint does not hold.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from roadmap import files
from roadmap.errors import RoadmapError
from roadmap.recipe import recipe_hash
from roadmap.spec import NetSpec, spec_hash

if TYPE_CHECKING:
    from roadmap.recipe import Recipe
    from roadmap.train import Run

CHECKPOINT_FORMAT = "roadmap-checkpoint/1"


def save(state: dict[str, Any], path: Path) -> None:
    """Write a checkpoint atomically (a crash mid-write leaves the previous one intact).

    Raises:
        RoadmapError: it cannot be written (a full disk, an unwritable folder).
    """
    try:
        files.write_with(path, lambda handle: torch.save(state, handle))
    except RuntimeError as e:  # torch's writer reports a failed write (ENOSPC) this way
        raise RoadmapError(f"cannot write the checkpoint {path}: {e}") from None


def load(path: Path, spec: NetSpec | None = None) -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``) and, given a spec, check it fits.

    Raises:
        RoadmapError: the file is missing, damaged, not a roadmap checkpoint, or was trained
            for another network.
    """
    path = Path(path)
    if not path.is_file():
        raise RoadmapError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles before raising
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged or foreign files
        raise RoadmapError(f"{path} is not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise RoadmapError(f"{path} is not a roadmap checkpoint (no {CHECKPOINT_FORMAT!r} tag)")
    if spec is not None:
        check_spec(state, spec, path)
    return state


def check_spec(state: dict[str, Any], spec: NetSpec, path: Path) -> None:
    """A clear error, before any shape mismatch, when a checkpoint holds another network."""
    if state["spec_hash"] != spec_hash(spec):
        name = state.get("name") or state["steps"][-1]
        again = state.get("select") or f"--steps {','.join(state['steps'])}"
        raise RoadmapError(
            f"{path} holds {name} (spec {state['spec_hash']}), not the network asked for "
            f"(spec {spec_hash(spec)}); pass {again}"
        )


def matches(path: Path, spec: NetSpec, recipe_hash: str, seed: int) -> bool:
    """Whether the checkpoint at ``path`` continues this very run (so resuming it is right)."""
    try:
        state = load(path)
    except RoadmapError:
        return False
    return (state["spec_hash"], state["recipe_hash"], state["seed"]) == (
        spec_hash(spec),
        recipe_hash,
        seed,
    )


def state_of(run: Run, epoch: int) -> dict[str, Any]:
    """Everything needed to continue a ``roadmap.train.Run`` after ``epoch``; loadable with
    ``weights_only=True``."""
    return {
        "format": CHECKPOINT_FORMAT,
        "name": run.selection.name,
        "select": run.selection.cli_args(),
        "steps": list(run.selection.steps),
        "spec_hash": spec_hash(run.spec),
        "num_classes": run.data.num_classes,
        "recipe": run.recipe.to_dict(),
        "recipe_hash": recipe_hash(run.recipe),
        "data": run.data.source.slug,
        "seed": run.options.seed,
        "epochs_done": epoch + 1,
        "updates": run.updates,
        "train_time_s": run.train_time,
        "images_seen": run.images_seen,
        "skipped": run.skipped,
        "best": run.best,
        "history": run.history,
        "model": run.model.state_dict(),
        "ema": run.ema.module.state_dict() if run.ema is not None else None,
        "optimizer": run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict(),
    }


def to_resume(path: Path, spec: NetSpec, recipe: Recipe, seed: int) -> dict[str, Any] | None:
    """The checkpoint to resume at ``path`` (None if there is none), checked to be this run's.

    Raises:
        RoadmapError: it holds another network, recipe or seed.
    """
    if not path.exists():
        return None
    state = load(path, spec)
    if state["recipe_hash"] != recipe_hash(recipe) or state["seed"] != seed:
        raise RoadmapError(
            f"{path} was made with another recipe or seed (recipe {state['recipe_hash']}, "
            f"seed {state['seed']}); resume with the same ones, or drop --resume to start over"
        )
    return state


def restore(run: Run, state: dict[str, Any], log: list[dict[str, Any]]) -> None:
    """Put a ``roadmap.train.Run`` back where ``state`` left it.

    Args:
        run: the freshly assembled run.
        state: from :func:`to_resume`.
        log: the run folder's epoch log, for a 0.1 checkpoint that holds no history.
    """
    run.model.load_state_dict(state["model"])
    if run.ema is not None and state["ema"] is not None:
        run.ema.module.load_state_dict(state["ema"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scaler.load_state_dict(state["scaler"])
    run.start_epoch, run.updates = state["epochs_done"], state["updates"]
    run.train_time, run.images_seen = state["train_time_s"], state["images_seen"]
    run.skipped, run.best = state["skipped"], state["best"]
    run.history = state.get("history") or [line for line in log if line["epoch"] <= run.start_epoch]
    run.scheduler.step_update(run.updates)
