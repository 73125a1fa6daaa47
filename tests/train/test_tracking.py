"""--log: a run's curves in TensorBoard (read back from the event files), W&B and MLflow (their
offline stores; skipped without their packages), continued, not duplicated, after a resume."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roadmap.cli import app
from roadmap.errors import RoadmapError
from roadmap.train import tracking

pytest.importorskip("tensorboard", reason='pip install -e ".[log]" (or ".[test]")')
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

runner = CliRunner()
TINY = ["--data", "synthetic:32", "--epochs", "2", "--batch-size", "8", "--img-size", "32"]
TINY += ["--workers", "0", "--quiet"]


def curves(folder: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(folder))
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


@pytest.mark.slow  # over 1 s: the full suite runs it
def test_a_run_logged_to_tensorboard_reads_back_as_its_record(tmp_path: Path) -> None:
    args = ["train", "--upto", "gelu", *TINY, "--log", "tensorboard", "--results", tmp_path]
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    (folder,) = tmp_path.glob("synthetic-32/*/gelu/seed0")
    record = json.loads((folder / "metrics.json").read_text())
    log = [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]
    got = curves(folder / "tensorboard")
    assert {"train/loss", "train/lr", "train/images_per_s", "val/top1", "val/top5"} <= set(got)
    updates = 8  # 32 images, batch 8, 2 epochs
    assert [step for step, _ in got["val/top1"]] == [4, 8]  # steps are updates: one x-axis
    assert [v for _, v in got["val/top1"]] == pytest.approx([e["top1"] for e in log])
    assert got["final/top1"] == [(updates, pytest.approx(record["top1"]))]
    assert got["train/epoch_loss"][-1][1] == pytest.approx(log[-1]["train_loss"])


def test_a_resumed_run_continues_its_curves_without_duplicates(tmp_path: Path) -> None:
    """A killed run wrote points after its last checkpoint (steps 5-7); resumed at step 4,
    those are purged and the run's own continue: every step once."""
    params = {"epochs": 2, "network": "gelu"}
    first = tracking.Trackers(["tensorboard"], tmp_path, "r", params, tmp_path, None)
    for step in range(1, 8):
        first.scalars({"train/loss": float(step)}, step)
    first.close()
    resumed = tracking.Trackers(["tensorboard"], tmp_path, "r", params, tmp_path, 4)
    for step in range(4, 9):
        resumed.scalars({"train/loss": 100.0 + step}, step)
    resumed.close()
    loss = curves(tmp_path / "tensorboard")["train/loss"]
    assert [s for s, _ in loss] == list(range(1, 9))
    assert [v for _, v in loss] == [1.0, 2.0, 3.0, 104.0, 105.0, 106.0, 107.0, 108.0]


def test_a_tracker_that_is_not_installed_is_one_error_before_training(monkeypatch) -> None:  # noqa: ANN001
    tracking.check_available(["tensorboard"])
    with pytest.raises(RoadmapError, match="one of tensorboard, wandb, mlflow"):
        tracking.check_available(["neptune"])
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RoadmapError, match=r'needs the wandb package: pip install -e ".\[wandb'):
        tracking.check_available(["wandb"])


@pytest.mark.slow  # a few seconds each, where installed (CI does not install them)
@pytest.mark.parametrize("name", ["wandb", "mlflow"])
def test_wandb_and_mlflow_offline(name: str, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    pytest.importorskip(name, reason=f'pip install -e ".[{name}]"')
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = ["train", "--upto", "gelu", *TINY, "--log", name, "--results", tmp_path]
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    (folder,) = tmp_path.glob("synthetic-32/*/gelu/seed0")
    if name == "mlflow":
        import mlflow

        mlflow.set_tracking_uri(f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}")
        run = mlflow.get_run((folder / "mlflow_run_id").read_text().strip())
        assert run.data.params["network"] == "gelu"
        history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "val/top1")
        assert [m.step for m in history] == [4, 8]
    else:
        assert list(folder.glob("wandb/offline-run-*/run-*.wandb"))
