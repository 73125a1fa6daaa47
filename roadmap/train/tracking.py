"""Experiment tracking: a run's curves where researchers already look at them (``--log``).

The run record (``metrics.json``, ``train_log.jsonl``) stays the source of truth; a tracker is
a view of the same numbers, written by rank 0 while the run trains:

- ``tensorboard``: event files in the run folder (``<run>/tensorboard``), so ``tensorboard
  --logdir results/`` shows every run, named by its place in the store (PyTorch's
  ``SummaryWriter``; needs the ``tensorboard`` package);
- ``wandb``: Weights & Biases, through its client (``pip install wandb``; ``WANDB_MODE=offline``
  keeps it off the network), one W&B run per roadmap run, its id derived from the run's folder;
- ``mlflow``: MLflow, through its client (``pip install mlflow``), in the tracking store that
  ``MLFLOW_TRACKING_URI`` names, else a SQLite store at ``<results>/mlflow.db`` (``mlflow ui
  --backend-store-uri sqlite:///results/mlflow.db`` shows it).

Each gets the recipe and the network as parameters, the training loss, learning rate and
images/s as the run goes (every 10 updates, as the progress display refreshes), the epoch's top-1 /
top-5 (and EMA's), and the final record's numbers. Every point's step is the number of updates
so far, so a resumed run continues the same curves: TensorBoard purges what a killed run wrote
after its last checkpoint, and W&B and MLflow resume the same run.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from roadmap.arch.spec import NetSpec, spec_hash
from roadmap.errors import RoadmapError
from roadmap.results.store import RunKey
from roadmap.train.recipe import Recipe
from roadmap.util import files

TRACKERS = ("tensorboard", "wandb", "mlflow")  # each the name of its client package too
# An epoch's summary keys -> the curves they extend.
EPOCH_TAGS = {
    "top1": "val/top1",
    "top5": "val/top5",
    "ema_top1": "val/ema_top1",
    "ema_top5": "val/ema_top5",
    "train_loss": "train/epoch_loss",
}


def check_available(names: Sequence[str]) -> None:
    """Fail before training when a tracker's client is not installed."""
    for name in names:
        if name not in TRACKERS:
            raise RoadmapError(f"--log {name!r}: one of {', '.join(TRACKERS)}")
        if importlib.util.find_spec(name) is None:
            extra = "log" if name == "tensorboard" else name
            raise RoadmapError(
                f'--log {name} needs the {name} package: pip install -e ".[{extra}]"'
            )


class Trackers:
    """The trackers of one run (none: every call does nothing)."""

    def __init__(
        self,
        names: Sequence[str],
        folder: Path,
        name: str,
        params: dict[str, Any],
        results: Path,
        resumed_at: int | None,
    ):
        self._all = [_open(n, folder, name, params, results, resumed_at) for n in names]

    @classmethod
    def for_run(
        cls,
        names: Sequence[str],
        key: RunKey,
        folder: Path,
        spec: NetSpec,
        recipe: Recipe,
        results: Path,
        resumed_at: int | None,
    ) -> Trackers:
        """A training run's trackers, named by its place in the store."""
        name = f"{key.data}/{key.recipe}/{key.name}/seed{key.seed}"
        params = run_params(recipe.to_dict(), spec_hash(spec), key.name)
        return cls(names, folder, name, params, results, resumed_at)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tracker in self._all:
            tracker.scalars({k: float(v) for k, v in values.items() if v is not None}, step)

    def epoch(self, summary: dict[str, Any], step: int) -> None:
        self.scalars({tag: summary.get(key) for key, tag in EPOCH_TAGS.items()}, step)

    def finish(self, record: dict[str, Any], step: int) -> None:
        keys = ("top1", "top5", "best_top1", "fused_top1", "train_time_s", "images_per_s")
        final = {f"final/{k}": record[k] for k in keys if record.get(k) is not None}
        for tracker in self._all:
            tracker.finish(final, step)

    def close(self) -> None:
        for tracker in self._all:
            tracker.close()


def run_params(recipe: dict[str, Any], spec_hash: str, name: str) -> dict[str, Any]:
    """What a tracker shows as the run's parameters: the recipe's keys and the network."""
    plain = (int, float, str, bool)
    flat = {k: (v if isinstance(v, plain) else str(v)) for k, v in recipe.items()}
    return {**flat, "network": name, "spec_hash": spec_hash}


def _open(
    name: str, folder: Path, run: str, params: dict, results: Path, resumed_at: int | None
) -> Any:
    if name == "tensorboard":
        return _TensorBoard(folder, params, resumed_at)
    if name == "wandb":
        return _Wandb(folder, run, params)
    return _MLflow(folder, run, params, results)


class _TensorBoard:
    def __init__(self, folder: Path, params: dict[str, Any], resumed_at: int | None):
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: points a killed run wrote after its last checkpoint are hidden
        self.writer = SummaryWriter(str(folder / "tensorboard"), purge_step=resumed_at)
        self.params = params
        if not resumed_at:
            table = "\n".join(f"| {k} | {v} |" for k, v in params.items())
            self.writer.add_text("run/parameters", "| key | value |\n|---|---|\n" + table, 0)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def finish(self, final: dict[str, float], step: int) -> None:
        # the hyper-parameters view: parameters beside the final numbers (which it also writes
        # as scalars), in this run's folder
        self.writer.add_hparams(self.params, final, run_name=".", global_step=step)

    def close(self) -> None:
        self.writer.close()


def _stable_id(folder: Path) -> str:
    return hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]


class _Wandb:
    def __init__(self, folder: Path, run: str, params: dict[str, Any]):
        import wandb

        self.wandb = wandb
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "roadmap"),
            name=run,
            id=_stable_id(folder),  # the same run folder continues the same W&B run
            resume="allow",
            dir=str(folder),
            config=params,
        )

    def scalars(self, values: dict[str, float], step: int) -> None:
        if step >= self.run.step:  # a resumed run does not rewrite steps it has
            self.run.log(values, step=step)

    def finish(self, final: dict[str, float], step: int) -> None:
        self.run.summary.update(final)

    def close(self) -> None:
        self.run.finish()


class _MLflow:
    def __init__(self, folder: Path, run: str, params: dict[str, Any], results: Path):
        import mlflow

        self.mlflow = mlflow
        if "MLFLOW_TRACKING_URI" not in os.environ:  # MLflow 3's default kind of store
            mlflow.set_tracking_uri(f"sqlite:///{(results / 'mlflow.db').resolve()}")
        mlflow.set_experiment("roadmap")
        marker = folder / "mlflow_run_id"  # the same run folder continues the same MLflow run
        run_id = marker.read_text().strip() if marker.is_file() else None
        self.run = mlflow.start_run(run_id=run_id, run_name=None if run_id else run)
        if run_id is None:
            folder.mkdir(parents=True, exist_ok=True)
            files.write_text(marker, self.run.info.run_id)
            mlflow.log_params(params)

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics(values, step=step)

    def finish(self, final: dict[str, float], step: int) -> None:
        self.scalars(final, step)

    def close(self) -> None:
        self.mlflow.end_run()
