"""Checkpoints: ``last.pt`` written whole after every epoch, read back safely, checked to fit.

A checkpoint is a plain dict of tensors and JSON-like values, so it loads with
``torch.load(weights_only=True)`` (no pickled code runs). It names the network it holds (steps,
selection name, spec hash), the recipe and seed, and carries the per-epoch log lines of every
epoch it contains: the epoch log is rewritten from it, so the log can never claim an epoch the
checkpoint does not hold.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from roadmap.arch.spec import NetSpec, spec_hash
from roadmap.errors import RoadmapError
from roadmap.train.recipe import recipe_hash
from roadmap.util import files

if TYPE_CHECKING:
    from roadmap.arch.selection import Selection
    from roadmap.train.data import Datasets
    from roadmap.train.recipe import Recipe

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


@dataclass
class Progress:
    """Where a run stands: everything a checkpoint carries besides the weights and optimizer.

    Attributes:
        epochs_done: finished epochs.
        updates: optimizer steps taken (the schedule's clock).
        train_time: seconds spent training (evaluation excluded).
        images_seen: training images processed.
        skipped: undecodable images skipped so far.
        best: the best epoch's ``top1``/``top5``/``epoch`` (and ``ema_*``).
        history: the epoch log's lines, one per finished epoch.
    """

    epochs_done: int = 0
    updates: int = 0
    train_time: float = 0.0
    images_seen: int = 0
    skipped: int = 0
    best: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


def identity(
    selection: Selection, spec: NetSpec, recipe: Recipe, data: Datasets, seed: int
) -> dict[str, Any]:
    """What a checkpoint says about the run it belongs to (checked before resuming)."""
    return {
        "name": selection.name,
        "select": selection.cli_args(),
        "steps": list(selection.steps),
        "spec_hash": spec_hash(spec),
        "num_classes": data.num_classes,
        "recipe": recipe.to_dict(),
        "recipe_hash": recipe_hash(recipe),
        "data": data.source.slug,
        "seed": seed,
    }


def state_of(
    identity: dict[str, Any],
    progress: Progress,
    model: nn.Module,
    ema: nn.Module | None,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
) -> dict[str, Any]:
    """Everything needed to continue a run; loadable with ``weights_only=True``.

    Args:
        identity: what the run is (name, steps, spec and recipe hashes, data, seed, ...).
        progress: where it stands.
        model: the network.
        ema: its weight average, if the recipe keeps one.
        optimizer: the optimizer.
        scaler: the AMP loss scaler.
    """
    return {
        "format": CHECKPOINT_FORMAT,
        **identity,
        "epochs_done": progress.epochs_done,
        "updates": progress.updates,
        "train_time_s": progress.train_time,
        "images_seen": progress.images_seen,
        "skipped": progress.skipped,
        "best": progress.best,
        "history": progress.history,
        "model": model.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
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


def restore(
    state: dict[str, Any],
    model: nn.Module,
    ema: nn.Module | None,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    log: list[dict[str, Any]],
) -> Progress:
    """Load a checkpoint's weights and optimizer state in place; return where it stood.

    Args:
        state: from :func:`to_resume`.
        model: the network (freshly built).
        ema: its weight average, if the recipe keeps one.
        optimizer: the optimizer.
        scaler: the AMP loss scaler.
        log: the run folder's epoch log, for a 0.1 checkpoint that holds no history.
    """
    model.load_state_dict(state["model"])
    if ema is not None and state["ema"] is not None:
        ema.load_state_dict(state["ema"])
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    done = state["epochs_done"]
    return Progress(
        epochs_done=done,
        updates=state["updates"],
        train_time=state["train_time_s"],
        images_seen=state["images_seen"],
        skipped=state["skipped"],
        best=state["best"],
        history=state.get("history") or [line for line in log if line["epoch"] <= done],
    )
