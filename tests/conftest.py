"""Shared fixtures. Rich output is rendered at a fixed width so CLI text is assertable."""

import os
import sys
from collections.abc import Iterator

import pytest
import torch

os.environ["COLUMNS"] = "120"  # rich reads this: stable wrapping in CLI tests
os.environ.setdefault("NO_COLOR", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n N: N workers share the cores, one each
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _own_folder(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in an empty folder of its own: whatever a command writes by default
    (``results/``, ``NAME.pte``) never lands in the checkout, and no test sees the checkout's
    committed results or another test's files."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a busy 2-core machine, two OpenMP threads contend and crawl."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def restore_registry() -> Iterator[None]:
    """A plugin a test loads must not leak into other tests (the step registry is
    process-wide): its steps are unregistered and its module forgotten afterwards."""
    from roadmap.arch import registry

    registry.list_steps()
    saved = {roadmap: dict(steps) for roadmap, steps in registry._REGISTRY.items()}
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)
    for name in [m for m in sys.modules if m.startswith("roadmap_plugin_")]:
        del sys.modules[name]
