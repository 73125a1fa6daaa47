"""Progress of a training run: rich bars on a terminal, nothing when quiet.

Only the primary process draws (under torchrun the others pass ``enabled=False``).
"""

from __future__ import annotations

import math
import time
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
    from roadmap.train.recipe import LR_REFERENCE_BATCH

    r = recipe
    text = (
        f"training {name} on {data.source.slug} ({len(data.train)} train / {len(data.val)} val "
        f"images, {data.num_classes} classes), recipe {r.name}: lr = {r.base_lr:g} x "
        f"{r.batch_size} / {LR_REFERENCE_BATCH} = {r.peak_lr():.3g} (global batch {r.batch_size} = "
        f"{r.batch_size // processes} x {processes} process{'es' if processes > 1 else ''})"
    )
    if started is not None:
        text += f"; starting from {started.loaded} tensors of {started.source}"
    if data.source.synthetic:
        text += "; SYNTHETIC data: throughput only, accuracy means nothing"
    return text


def _bars(console: Console, shown: bool) -> Progress:
    """Rich bars: description, bar, done/total, info, elapsed and ETA (nothing when hidden)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=not shown,
    )


class Display:
    """Progress of a run: rich bars on a terminal; on anything else (nohup, a cluster log, CI)
    a plain line every ``LINE_EVERY_FRACTION`` of an epoch or ``LINE_EVERY_S`` seconds, whichever
    comes first, with images/s, loss and the epoch's ETA. Nothing at all when disabled."""

    LINE_EVERY_FRACTION = 0.1
    LINE_EVERY_S = 30.0

    def __init__(self, enabled: bool, console: Console | None = None) -> None:
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self.interactive = self.console.is_terminal
        self.progress = _bars(self.console, enabled and self.interactive)
        self.epochs_task: Any = None
        self.iter_task: Any = None
        self._epoch = (0, 0, 0)  # (epoch, epochs, iterations) for plain lines
        self._started = self._last_line = 0.0
        self._last_done = 0

    def __enter__(self) -> Display:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def note(self, text: str) -> None:
        """A line above the bars."""
        if self.enabled:
            self.progress.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def start_epoch(self, epoch: int, epochs: int, iterations: int) -> None:
        if not self.enabled:
            return
        self._epoch = (epoch, epochs, iterations)
        self._started = self._last_line = time.monotonic()
        self._last_done = 0
        if self.epochs_task is None:
            self.epochs_task = self.progress.add_task(
                "epochs", total=epochs, completed=epoch, info=""
            )
        if self.iter_task is not None:
            self.progress.remove_task(self.iter_task)
        self.iter_task = self.progress.add_task(f"epoch {epoch + 1}", total=iterations, info="")

    def update(self, done: int, loss: float, lr: float, images_per_s: float) -> None:
        if not self.enabled:
            return
        info = f"loss {loss:.3f}  lr {lr:.2e}  {images_per_s:,.0f} img/s"
        if self.interactive:
            self.progress.update(self.iter_task, completed=done, info=info)
            return
        epoch, epochs, iterations = self._epoch
        now = time.monotonic()
        step = max(1, math.ceil(iterations * self.LINE_EVERY_FRACTION))
        due = done - self._last_done >= step or now - self._last_line >= self.LINE_EVERY_S
        if due or done == iterations:
            elapsed = now - self._started
            eta = elapsed / max(done, 1) * (iterations - done)
            self.note(
                f"epoch {epoch + 1}/{epochs} {done}/{iterations} ({done / iterations:.0%})  "
                f"{info}  ETA {_clock(eta)}"
            )
            self._last_line, self._last_done = now, done

    def end_epoch(self, epoch: int, epochs: int, summary: dict[str, Any]) -> None:
        if not self.enabled:
            return
        info = f"loss {summary['train_loss']:.3f}"
        if "top1" in summary:  # not on an epoch the recipe does not score (eval_every)
            info = f"top-1 {summary['top1']:.1f}%  {info}"
        if self.interactive:
            self.progress.update(self.epochs_task, completed=epoch + 1, info=info)
        else:
            self.note(f"epoch {epoch + 1}/{epochs} done: {info}")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


class SweepDisplay:
    """Progress of a sweep whose runs train in worker processes (``roadmap run --jobs N``):
    the workers draw nothing, and this shows a bar over the plan's runs and one line as each
    run starts and ends, with its top-1 and wall-clock time; ``note`` comes first, with the
    first run (so an option the workers refuse is the only thing said). Nothing at all when
    disabled."""

    def __init__(
        self, total: int, enabled: bool, note: str = "", console: Console | None = None
    ) -> None:
        self.enabled = enabled
        self._note = note
        self.console = console or Console(stderr=True)
        self.progress = _bars(self.console, enabled and self.console.is_terminal)
        self.task = self.progress.add_task("runs", total=total, info="")
        self._started: dict[tuple[str, int], float] = {}

    def __enter__(self) -> SweepDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def started(self, name: str, seed: int) -> None:
        self._started[(name, seed)] = time.monotonic()
        self._info()
        self._line(f"training {name} seed {seed}")

    def finished(self, outcome: Any) -> None:
        began = self._started.pop((outcome.name, outcome.seed), None)
        self.progress.advance(self.task)
        self._info()
        what = f"{outcome.status} {outcome.name} seed {outcome.seed}"
        if outcome.record is not None:
            what += f": top-1 {outcome.record.top1:.2f} %"
        if began is not None:
            what += f" in {_clock(time.monotonic() - began)}"
        self._line(what)

    def _info(self) -> None:
        running = ", ".join(f"{name} seed {seed}" for name, seed in self._started)
        self.progress.update(self.task, info=f"training {running}" if running else "")

    def _line(self, text: str) -> None:
        if not self.enabled:
            return
        for line in (self._note, text) if self._note else (text,):
            self.progress.console.print(line, highlight=False, markup=False, soft_wrap=True)
        self._note = ""
