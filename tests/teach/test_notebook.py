"""Notebooks: written from the lessons, executed like code, and the committed ones kept current.

The fast tier writes a two-step notebook with ``roadmap notebook`` and executes it top to bottom
in a Jupyter kernel (nbclient) on the tiny budget; the full tier executes every committed
notebook under ``docs/notebooks/`` the same way and regenerates each, failing when one is out of
date. Any error output fails the run.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from typer.testing import CliRunner

from roadmap.arch.roadmaps import get_roadmap
from roadmap.arch.selection import Selection
from roadmap.cli import app
from roadmap.measure.counts import Counts
from roadmap.teach import notebook

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "docs" / "notebooks"
BUILT_IN = ("repvit", "convnext", "visformer")

runner = CliRunner()


def execute(path: Path) -> dict:
    """Run a notebook top to bottom in a fresh kernel, in its own folder, on the tiny budget;
    return it with its outputs. Fails on the first cell that raises (nbclient's
    CellExecutionError names the cell and the error)."""
    nbclient = pytest.importorskip("nbclient", reason='pip install -e ".[test]"')
    pytest.importorskip("ipykernel", reason='pip install -e ".[test]"')
    nb = nbformat.read(path, as_version=4)
    saved = os.environ.get("ROADMAP_NOTEBOOK_BUDGET")
    os.environ["ROADMAP_NOTEBOOK_BUDGET"] = "tiny"  # the kernel inherits it
    try:
        client = nbclient.NotebookClient(
            nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": path.parent}}
        )
        client.execute()
    finally:
        if saved is None:
            os.environ.pop("ROADMAP_NOTEBOOK_BUDGET")
        else:
            os.environ["ROADMAP_NOTEBOOK_BUDGET"] = saved
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", f"{cell.source!r}: {out.get('evalue')}"
            if out.get("name") == "stderr":
                assert "Traceback" not in out["text"] and "Error" not in out["text"], out["text"]
    return nb


def shown(nb: dict, source: str) -> str:
    """The Markdown a code cell displayed."""
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and c.source == source]
    return "\n".join(o["data"]["text/markdown"] for o in cell.outputs if "data" in o)


def test_a_notebook_is_written_from_the_lessons(tmp_path: Path) -> None:
    out = tmp_path / "gelu.ipynb"
    result = runner.invoke(app, ["notebook", "--upto", "gelu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text == notebook.notebook_json("repvit", "gelu")  # the same bytes twice
    nb = nbformat.reads(text, as_version=4)  # sources joined back into strings
    md = "\n".join(c["source"] for c in nb["cells"] if c["cell_type"] == "markdown")
    gelu = Selection.of("repvit", "gelu").roadmap
    assert "## 1. `gelu`" in md and "```diff" in md
    assert md.count("data:image/svg+xml;base64,") >= 3  # the base's parts, gelu before/after
    assert "pip install -e" in nb["cells"][1]["source"]  # how to install comes first
    assert gelu.citation.split(":")[0] in md


def check_ran(ran: dict, folder: Path, network: Selection) -> None:
    """What every executed notebook must show: a step's numbers with their spread, both ends
    trained and read back from the store beside it, the plot, the fuse exercise's counts."""
    first, last = network.steps[0], network.steps[-1]
    numbers = shown(ran, f"session.numbers({last!r})")
    assert f"| `{network.name}` |" in numbers and " ms [IQR " in numbers
    assert "**change**" in numbers or len(network.steps) == 1
    trained = shown(ran, "session.train()")
    for end in (Selection.of(network.roadmap, first), network):
        assert f"| `{end.name}` |" in trained, trained
    assert "%" in trained  # a top-1 from a finished record, not a dash
    assert "(1)" in shown(ran, "session.table()")  # accuracy read back, one seed
    (plot,) = [c for c in ran.cells if c.source == "session.plot()"]
    assert "image/png" in plot.outputs[0]["data"]
    assert (folder / "results" / "digits").is_dir()  # runs went beside the notebook
    assert " deployed (" in shown(ran, f"session.fused({last!r})")


@pytest.mark.heavy
@pytest.mark.stand_in("test_the_committed_notebook_runs[repvit]")
def test_a_written_notebook_runs_top_to_bottom(tmp_path: Path) -> None:
    out = notebook.write_notebook(tmp_path / "gelu.ipynb", "repvit", "gelu")
    ran = execute(out)
    check_ran(ran, tmp_path, Selection.of("repvit", "gelu"))
    assert "5,470,832 deployed (-12,200)" in shown(ran, "session.fused('gelu')")


def test_notebook_refuses_what_it_cannot_write(tmp_path: Path) -> None:
    result = runner.invoke(app, ["notebook", "--out", str(tmp_path / "x.md")])
    assert result.exit_code == 2 and ".ipynb" in result.output
    result = runner.invoke(app, ["notebook", "--upto", "nope", "--out", str(tmp_path / "x.ipynb")])
    assert result.exit_code == 2 and "nope" in result.output
    assert not list(tmp_path.iterdir())


def test_the_fuse_answer_follows_the_counts() -> None:
    fewer = notebook._fuse_answer(
        Counts(params=10, macs=None, deploy_params=8, deploy_macs=1, img_size=224)
    )
    more = notebook._fuse_answer(
        Counts(params=10, macs=None, deploy_params=12, deploy_macs=1, img_size=224)
    )
    same = notebook._fuse_answer(
        Counts(params=10, macs=None, deploy_params=10, deploy_macs=1, img_size=224)
    )
    assert "2 fewer parameters (10 → 8)" in fewer
    assert "2 more parameters (10 → 12)" in more
    assert "exactly as many" in same


@pytest.mark.slow
def test_the_skip_exercise_is_the_step_the_paper_measured_most() -> None:
    """RepViT: `widen` moved the paper's iPhone latency most (0.65 -> 0.89 ms); Visformer-S
    rebuilds the transition's changes, so its exercise falls back to one it keeps."""
    road = get_roadmap("repvit")
    name, target, with_it, without = notebook._step_to_skip(road, Selection.of(road))
    assert (name, target) == ("widen", "alternating_se")
    assert without.deploy_macs < with_it.deploy_macs
    road = get_roadmap("visformer")
    name, target, with_it, without = notebook._step_to_skip(road, Selection.of(road))
    assert with_it.deploy_params != without.deploy_params


@pytest.mark.slow
@pytest.mark.parametrize("name", BUILT_IN)
def test_the_committed_notebook_is_current(name: str) -> None:
    committed = (COMMITTED / f"{name}.ipynb").read_text()
    assert committed == notebook.notebook_json(name), (
        f"docs/notebooks/{name}.ipynb is out of date: roadmap notebook --roadmap {name} "
        f"--out docs/notebooks/{name}.ipynb"
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", BUILT_IN)
@pytest.mark.heavy
def test_the_committed_notebook_runs(name: str, tmp_path: Path) -> None:
    copy = tmp_path / f"{name}.ipynb"
    copy.write_text((COMMITTED / f"{name}.ipynb").read_text())
    check_ran(execute(copy), tmp_path, Selection.of(name))
