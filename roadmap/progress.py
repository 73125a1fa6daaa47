"""Progress of a training run: rich bars on a terminal, nothing when quiet.

Only the primary process draws (under torchrun the others pass ``enabled=False``).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def describe_run(name: str, data: Any, recipe: Any, processes: int, started: Any = None) -> str:
    """The opening note: what trains on what, from what weights, and the learning-rate rule."""
    from roadmap.recipe import LR_REFERENCE_BATCH

    r = recipe
    text = (
        f"training {name} on {data.source.slug} ({len(data.train)} train / {len(data.val)} val "
        f"images, {data.num_classes} classes), recipe {r.name}: lr = {r.base_lr:g} x "
        f"{r.batch_size} / {LR_REFERENCE_BATCH} = {r.lr():.3g} (global batch {r.batch_size} = "
        f"{r.batch_size // processes} x {processes} process{'es' if processes > 1 else ''})"
    )
    if started is not None:
        text += f"; starting from {started.loaded} tensors of {started.source}"
    if data.source.synthetic:
        text += "; SYNTHETIC data: throughput only, accuracy means nothing"
    return text


class Display:
    """Rich progress bars for epochs and iterations (no output when disabled)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not enabled,
        )
        self.epochs_task: Any = None
        self.iter_task: Any = None

    def __enter__(self) -> Display:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def note(self, text: str) -> None:
        """A line above the bars."""
        if self.enabled:
            self.progress.console.print(text, highlight=False, markup=False)

    def start_epoch(self, epoch: int, epochs: int, iterations: int) -> None:
        if not self.enabled:
            return
        if self.epochs_task is None:
            self.epochs_task = self.progress.add_task(
                "epochs", total=epochs, completed=epoch, info=""
            )
        if self.iter_task is not None:
            self.progress.remove_task(self.iter_task)
        self.iter_task = self.progress.add_task(f"epoch {epoch + 1}", total=iterations, info="")

    def update(self, done: int, loss: float, lr: float, images_per_s: float) -> None:
        if self.enabled:
            info = f"loss {loss:.3f}  lr {lr:.2e}  {images_per_s:,.0f} img/s"
            self.progress.update(self.iter_task, completed=done, info=info)

    def end_epoch(self, epoch: int, epochs: int, summary: dict[str, Any]) -> None:
        if self.enabled:
            info = f"top-1 {summary['top1']:.1f}%  loss {summary['train_loss']:.3f}"
            self.progress.update(self.epochs_task, completed=epoch + 1, info=info)
