"""Runs never vanish: where a run went, what the store holds, progress in logs, busy machines."""

import io
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from roadmap.arch.selection import Selection
from roadmap.cli import app
from roadmap.measure import host
from roadmap.report import study_table
from roadmap.study.comparison import Row, Study
from roadmap.study.plan import prefixes
from roadmap.train.progress import Display
from tests.helpers import make_conditions, make_record, store_record

runner = CliRunner()


@pytest.mark.slow
def test_train_says_where_an_overridden_run_went_and_how_to_see_it(tmp_path: Path) -> None:
    args = ["train", "--upto", "mobilenetv3_large", "--epochs", "1", "--out", str(tmp_path)]
    result = runner.invoke(app, [*args, "--data", "synthetic:64", "--batch-size", "16"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    (folder,) = tmp_path.glob("synthetic-64/quick-*/mobilenetv3_large/seed0")
    label = folder.parent.parent.name
    assert f"(recipe label {label})" in text
    assert f"roadmap table --data synthetic:64 --recipe {label} --results {tmp_path}" in text
    # not a terminal (a log, CI, nohup): plain progress lines with speed and ETA
    assert "epoch 1/1 " in text and "img/s" in text and "ETA 0:" in text
    assert "epoch 1/1 done: top-1" in text


def test_a_table_without_matching_results_says_what_the_store_holds(tmp_path: Path) -> None:
    steps = ["mobilenetv3_large", "gelu"]
    store_record(tmp_path, make_record(steps, 0, 90.0, recipe="quick-6cd071824770"))
    result = runner.invoke(
        app, ["table", "--upto", "gelu", "--no-latency", "--results", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "no trained results for these networks under digits/quick" in text
    assert "digits/quick-6cd071824770 (1 network)" in text
    assert "roadmap table --data digits --recipe quick-6cd071824770" in text


def study_timed_with(contention: host.Contention) -> Study:
    from roadmap.measure.latency import LatencyRecord

    conditions = make_conditions(contention=contention)
    record = LatencyRecord("x", [], True, 10.0, 9.0, 11.0, 2.0, 9.0, 5, conditions, [])
    return Study.of([Row(v, latency=record) for v in prefixes(Selection.of("repvit", "gelu"))])


def test_a_busy_machine_is_called_out_by_the_one_rule() -> None:
    quiet = study_timed_with(host.Contention(0.05, 0.0, 0.1, 0.1, 2))
    busy = study_timed_with(host.Contention(1.2, 0.0, 1.5, 1.5, 2))
    assert study_table.busy_text(quiet) is None
    assert "kept 1.20 of 2 cores busy" in study_table.busy_text(busy)
    assert "BUSY MACHINE" in study_table.latency_header(busy)


def test_progress_lines_without_a_terminal() -> None:
    out = io.StringIO()
    display = Display(enabled=True, console=Console(file=out, width=200))
    with display:
        display.start_epoch(0, 2, 100)
        for done in range(1, 101):
            display.update(done, loss=1.0, lr=1e-3, images_per_s=120.0)
        display.end_epoch(0, 2, {"top1": 50.0, "train_loss": 1.0})
    lines = out.getvalue().splitlines()
    assert len(lines) == 11  # every 10 % of the epoch, and its end
    assert lines[0].startswith("epoch 1/2 10/100 (10%)") and "120 img/s" in lines[0]
    assert lines[-1] == "epoch 1/2 done: top-1 50.0%  loss 1.000"


@pytest.mark.slow
def test_training_on_a_busy_machine_warns_and_records_it(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(host.CpuWatch, "stop", lambda self: host.Contention(1.5, 0.0, 2.0, 2.0, 2))
    args = ["train", "--upto", "mobilenetv3_large", "--epochs", "1", "--out", str(tmp_path)]
    args += ["--data", "synthetic:16", "--batch-size", "8"]  # the data does not matter here
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "the machine was busy while training" in " ".join(result.output.split())
    (record,) = tmp_path.glob("*/*/*/seed0/metrics.json")
    assert '"other_cpu_cores": 1.5' in record.read_text()


def test_a_multi_seed_run_says_which_deltas_need_more_seeds(tmp_path: Path) -> None:
    """Everything is stored already, so `run` trains nothing and goes straight to the advice."""
    from roadmap.train.recipe import load_recipe, recipe_hash

    quick = recipe_hash(load_recipe("quick"))
    for seed, (a, b) in enumerate([(80.0, 81.0), (81.0, 81.5), (80.5, 82.5)]):
        store_record(tmp_path, make_record(["mobilenetv3_large"], seed, a, recipe_hash=quick))
        store_record(
            tmp_path, make_record(["mobilenetv3_large", "gelu"], seed, b, recipe_hash=quick)
        )
    args = ["run", "--upto", "gelu", "--seeds", "0,1,2", "--quiet", "--out", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert text.count("stored") == 6
    assert "Not yet findings" in text and "gelu +1.2: ~6 seeds" in text
