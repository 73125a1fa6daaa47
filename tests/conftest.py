"""Shared fixtures. Rich output is rendered at a fixed width so CLI text is assertable."""

import os
from collections.abc import Iterator

# One torch thread for the suite and for every command it starts as a process (unless a test
# asks for more): the suite keeps the cores busy with its own workers, and there a process
# with one thread runs faster than one with two (benchmarks/busy_machine.py); a run's thread
# count is also the same each time, so two runs compared tensor by tensor agree to the last
# bit. Set before torch loads, which reads it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

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


@pytest.fixture(autouse=True)
def _ctrl_c_ends_the_suite(request: pytest.FixtureRequest) -> Iterator[None]:
    """One Ctrl-C ends the suite, whatever test it lands in: a command run in-process takes the
    press (it finishes its epoch and returns, as it should for a user), and without this the
    suite would go on with the next test. Tests that press Ctrl-C themselves say so."""
    from roadmap.train import interrupt

    before = interrupt.presses()
    yield
    if interrupt.presses() > before and request.node.get_closest_marker("ctrl_c") is None:
        pytest.exit("Ctrl-C: stopping the test suite", returncode=130)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a busy 2-core machine, two OpenMP threads contend and crawl."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def restore_registry() -> Iterator[None]:
    """What a test registers (a plugin's steps, roadmap, block kinds, runtimes, data sources)
    must not leak into other tests (:func:`tests.helpers.isolated_registries`)."""
    from tests.helpers import isolated_registries

    with isolated_registries():
        yield


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected what this run leaves out
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The heavy tests first (stable order otherwise): pytest-xdist hands tests out in this
    order, and a 30-second test started last keeps one worker busy while the other has
    nothing left, as the last long run of a sweep would (``roadmap run`` orders its runs
    largest first for the same reason).

    A fast-tier stand-in (``@pytest.mark.stand_in("test_name[param]")``: a cheaper check of
    what a full-tier test checks whole) is skipped, saying so, when that test runs too."""
    selected = {item.name for item in items}
    for item in items:
        marker = item.get_closest_marker("stand_in")
        if marker is not None and marker.args[0] in selected:
            reason = f"the fast tier's stand-in for {marker.args[0]}, which runs here"
            item.add_marker(pytest.mark.skip(reason=reason))
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)
