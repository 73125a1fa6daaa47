"""How several models are run against each other: warm-up, then rounds in shuffled order.

Both the latency table and the profile compare networks on one machine, where slow drift
(thermal throttling, another process waking up) would favour whichever model ran at a quieter
moment. So every model is warmed up first (allocator, oneDNN's primitive cache, a runtime's
first call), then each round runs one iteration of every model in an order reshuffled each
round (fixed seed): drift hits all of them alike, and no model always follows the same
neighbour. The garbage collector is paused while this runs (as ``timeit`` does), so its pauses
do not land on one model, and torch runs in inference mode.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch


@contextmanager
def steady() -> Iterator[None]:
    """Inference mode with the garbage collector collected once, then paused (restored after)."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        with torch.inference_mode():
            yield
    finally:
        if was_enabled:
            gc.enable()


def warm_up(
    runners: Sequence[Callable[[], object]], iterations: int, sync: Callable[[], None]
) -> None:
    """Run every model ``iterations`` times, untimed (``sync`` waits for a device to finish)."""
    for run in runners:
        for _ in range(iterations):
            run()
        sync()


def rounds(models: int, iterations: int, seed: int) -> Iterator[int]:
    """Model indices, ``iterations`` rounds of each model once, every round in a new order."""
    order = list(range(models))
    rng = random.Random(seed)
    for _ in range(iterations):
        rng.shuffle(order)
        yield from order
