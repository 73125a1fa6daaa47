"""`roadmap.report.plot` on hand-made rows (nothing measured), and `roadmap plot` once for real."""

import dataclasses
import itertools
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roadmap.arch.selection import Selection
from roadmap.cli import app
from roadmap.errors import RoadmapError
from roadmap.measure.counts import Counts
from roadmap.measure.host import Contention
from roadmap.measure.latency import LatencyRecord
from roadmap.report.plot import figure, plot_study
from roadmap.study import comparison
from roadmap.study.comparison import Row, Study
from roadmap.study.plan import prefixes
from roadmap.study.stats import mean_ci
from roadmap.study.trained import Accuracy
from tests.helpers import make_conditions

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CONDITIONS = make_conditions()


def latency(median: float, iqr: float) -> LatencyRecord:
    return LatencyRecord(
        "x", [], True, median, median - iqr / 2, median + iqr / 2, iqr, median, 5, CONDITIONS, []
    )


def make_study(medians: list[float] | None = None, *, accuracy: bool = False) -> Study:
    """Every roadmap prefix with made-up latency (IQR 0.2 ms) and MACs, the paper's numbers."""
    variants = prefixes(Selection.of("repvit"))
    medians = medians or [10.0 + (i % 3) * 2 for i in range(len(variants))]
    rows = []
    for i, (v, median) in enumerate(zip(variants, medians, strict=True)):
        values = (79.5 + i, 80.0 + i, 80.5 + i)
        acc = Accuracy(80.0 + i, 0.5, 3, (0, 1, 2), values, mean_ci(values)) if accuracy else None
        counts = Counts(5_000_000, 300_000_000 + i * 10**7, 4_900_000, 200_000_000 + i * 10**7, 224)
        rows.append(Row(v, counts, latency(median, 0.2), acc, v.selection.paper))
    comparison.fill_deltas(rows)
    return Study.of(rows)


def texts(ax) -> list:  # noqa: ANN001
    return [t for t in ax.texts if t.get_text().strip()]


def test_png_is_written_atomically(tmp_path: Path):
    out = plot_study(make_study(), tmp_path / "figs" / "roadmap.png")
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 50_000
    assert [p.name for p in out.parent.iterdir()] == ["roadmap.png"]  # no temp file left


def test_svg_and_pdf(tmp_path: Path):
    svg = plot_study(make_study(), tmp_path / "r.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and len(svg) > 50_000
    assert plot_study(make_study(), tmp_path / "r.pdf").read_bytes()[:5] == b"%PDF-"


def test_bad_suffix_names_the_fix(tmp_path: Path):
    with pytest.raises(RoadmapError, match=r"\.png, \.svg or \.pdf"):
        plot_study(make_study(), tmp_path / "roadmap.jpg")
    assert not list(tmp_path.iterdir())


def test_no_accuracy_plots_macs_and_says_so():
    fig = figure(make_study())
    paper, ours, bars = fig.axes
    assert "MACs ≠ latency" in ours.get_title(loc="left")
    assert "MACs" in ours.get_ylabel() and "CPU Intel Xeon @ 2.20GHz" in ours.get_xlabel()
    assert "batch 1" in ours.get_xlabel()
    assert sorted(t.get_text() for t in texts(ours)) == sorted(str(i) for i in range(11))


def test_with_accuracy_plots_top1_and_a_top1_delta_panel():
    fig = figure(make_study(accuracy=True), accuracy_on="digits, recipe quick")
    paper, ours, bars, top1 = fig.axes
    assert "top-1" in ours.get_ylabel() and "digits" in ours.get_ylabel()
    assert "top-1" in top1.get_xlabel()
    ours_top1 = [p.get_width() for p in top1.patches if p.get_facecolor()[:3] != (1.0, 0.5, 0.0)]
    assert pytest.approx(1.0) in ours_top1  # each made-up step gains one point


def test_paper_panel_skips_steps_without_both_numbers():
    fig = figure(make_study())
    paper = fig.axes[0]
    labels = {t.get_text() for t in texts(paper)}
    assert labels == {"1", "2", "4", "5", "6", "7", "8", "9", "10"}  # no 0 (none), no 3 (no top-1)
    notes = " ".join(t.get_text() for t in fig.texts)
    assert "3 expansion_2" in notes and "0 mobilenetv3_large" in notes


def test_latency_deltas_are_percent_and_noise_is_hatched():
    medians = [10.0, 12.0, 12.1] + [12.1] * 8  # +20 %, then +0.8 % (inside the 0.2 ms IQR)
    bars = figure(make_study(medians)).axes[2]
    hatched = [p for p in bars.patches if p.get_hatch()]
    solid_widths = [round(p.get_width(), 3) for p in bars.patches if not p.get_hatch()]
    assert 20.0 in solid_widths
    assert len(hatched) == 9 and round(hatched[0].get_width(), 2) == 0.83


def test_labels_do_not_overlap_on_the_paper_numbers():
    fig = figure(make_study())
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes[:2]:
        boxes = [t.get_window_extent(renderer) for t in texts(ax)]
        for a, b in itertools.combinations(boxes, 2):
            assert not a.overlaps(b)
    keys = [t.get_window_extent(renderer) for t in fig.axes[2].get_yticklabels()]
    assert all(k.x1 < fig.axes[2].get_window_extent(renderer).x0 for k in keys)
    assert all(k.x0 > fig.axes[1].get_window_extent(renderer).x1 for k in keys)


@pytest.mark.slow  # over 1 s: the full suite runs it
def test_cli_plot_writes_a_png(tmp_path: Path):
    out = tmp_path / "x.png"
    result = CliRunner().invoke(app, ["plot", "--out", str(out), "--upto", "gelu", "--iters", "3"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize(
    "args",
    [["--out", "x.jpg"], ["--out", "x.png", "--upto", "nope"], ["--out", "x.png", "--data", "d"]],
)
def test_cli_plot_bad_values_exit_2(tmp_path: Path, args: list[str]):
    args = [str(tmp_path / a) if a.startswith("x.") else a for a in args]
    result = CliRunner().invoke(app, ["plot", *args])
    assert result.exit_code == 2
    assert "error:" in result.output and "Traceback" not in result.output


def test_unwritable_destination_is_one_clear_error(tmp_path: Path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(RoadmapError, match="cannot create folder .*file: a file of that name"):
        plot_study(make_study(), tmp_path / "file" / "roadmap.png")


def test_a_busy_machine_is_called_out():
    rows = make_study().rows
    quiet = " ".join(" ".join(t.get_text() for t in figure(Study.of(rows)).texts).split())
    busy_conditions = make_conditions(contention=Contention(1.2, 0.0, 5.8, 5.8, 2))
    for row in rows:
        row.latency = dataclasses.replace(row.latency, conditions=busy_conditions)
    busy = " ".join(" ".join(t.get_text() for t in figure(Study.of(rows)).texts).split())
    assert "machine was busy" not in quiet and "kept 0.01 of 2 cores busy" in quiet
    assert "The machine was busy" in busy and "kept 1.20 of 2 cores busy" in busy


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({}, "PyTorch 2.14.1 (eager)"),
        ({"backend": "executorch", "executorch_version": "1.5.1", "delegate": "XNNPACK"},
         "ExecuTorch 1.5.1 (XNNPACK delegate)"),
        ({"backend": "onnxruntime", "onnxruntime_version": "1.32.0"}, "ONNX Runtime 1.32.0"),
    ],
    ids=["eager", "executorch", "onnxruntime"],
)  # fmt: skip
def test_the_conditions_line_names_the_runtime_that_ran(fields: dict, says: str):
    rows = make_study().rows
    conditions = make_conditions(**fields)
    for row in rows:
        row.latency = dataclasses.replace(row.latency, conditions=conditions)
    text = " ".join(t.get_text() for t in figure(Study.of(rows)).texts)
    assert says in text
    assert ("PyTorch" in text) == (not fields)  # the runtime that ran, not torch beside it
