"""Shared fixtures. Rich output is rendered at a fixed width so CLI text is assertable."""

import os
from collections.abc import Iterator

import pytest
import torch

os.environ["COLUMNS"] = "120"  # rich reads this: stable wrapping in CLI tests
os.environ.setdefault("NO_COLOR", "1")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a busy 2-core machine, two OpenMP threads contend and crawl."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def calibrate_bn(model: torch.nn.Module, img_size: int = 64, batches: int = 3) -> torch.nn.Module:
    """Give every BatchNorm non-trivial affine params and running stats from real forward passes.

    Random affine params make the test non-trivial; statistics gathered from data (rather than
    drawn at random) keep a deep network's activations at a sane scale, as after training.
    """
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.uniform_(m.bias, -0.3, 0.3)
            m.momentum = None  # cumulative average over the calibration batches
            m.reset_running_stats()
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(8, 3, img_size, img_size))
    return model.eval()
