"""Training: resume equals an uninterrupted run, checkpoints are safe, records are complete,
the sweep skips finished work, and bad input ends with one line and exit code 2."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from roadmap.arch.registry import build_spec
from roadmap.arch.selection import Selection
from roadmap.cli import app
from roadmap.errors import EXIT_INTERRUPTED, RoadmapError, Stopped
from roadmap.results import store
from roadmap.train import checkpoint, setup
from roadmap.train import loop as training
from roadmap.train.evaluate import evaluate_checkpoint
from roadmap.train.interrupt import graceful_stop
from roadmap.train.recipe import load_recipe
from roadmap.train.run_options import RunOptions
from tests.helpers import REPO, corrupt_one_image, make_image_folder

STEP = "mobilenetv3_large"
# Every source of randomness the loop has: crops, flips, RandAugment, erasing, Mixup/CutMix,
# plus EMA and adaptive clipping, so that resuming has all of it to get right.
RICH = load_recipe("quick").replace(
    epochs=2,
    batch_size=8,
    hflip=0.5,
    auto_augment="rand-m9-mstd0.5-inc1",
    random_erasing=0.25,
    mixup=0.8,
    cutmix=1.0,
    ema=True,
    ema_decay=0.9,
    clip_grad=0.02,
    clip_mode="agc",
)
TINY_RECIPE = load_recipe("quick").replace(epochs=2, batch_size=8, img_size=32)
TIMING = ("images_per_s", "epoch_time_s")
runner = CliRunner()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def finished(images: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One uninterrupted run, shared by the tests that read its record and checkpoint."""
    out = tmp_path_factory.mktemp("uninterrupted")
    options = RunOptions(seed=3, workers=1, quiet=True, results=out)
    record = training.train(Selection.of("repvit", STEP), f"imagefolder:{images}", RICH, options)
    return {"record": record, "folder": _folder(out, record)}


@pytest.fixture
def python_sigint() -> object:
    """SIGINT handled as a Python program starts with it (a KeyboardInterrupt): pytest-xdist's
    workers ignore SIGINT, and these tests are about what a caller's handler sees."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def _ctrl_c_in_epoch_1(monkeypatch: pytest.MonkeyPatch, presses: int) -> list:
    """Press Ctrl-C ``presses`` times as the first epoch starts; returns the SIGINT handlers
    the training ran under."""
    seen = []
    train_one_epoch = training._train_one_epoch

    def pressed(run: training.Run, epoch: int) -> dict:
        seen.append(signal.getsignal(signal.SIGINT))
        for _ in range(presses if epoch == 0 else 0):
            os.kill(os.getpid(), signal.SIGINT)
        return train_one_epoch(run, epoch)

    monkeypatch.setattr(training, "_train_one_epoch", pressed)
    return seen


@pytest.mark.ctrl_c
@pytest.mark.usefixtures("python_sigint")
def test_the_library_leaves_ctrl_c_to_its_caller(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Called from a program (a test suite, a notebook), training installs no handler: Ctrl-C
    is the caller's KeyboardInterrupt at once, so pytest's Ctrl-C stops pytest."""
    seen = _ctrl_c_in_epoch_1(monkeypatch, presses=1)
    options = RunOptions(workers=0, quiet=True, results=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        training.train(Selection.of("repvit", STEP), f"imagefolder:{images}", TINY_RECIPE, options)
    assert seen == [signal.default_int_handler]


@pytest.mark.ctrl_c
@pytest.mark.usefixtures("python_sigint")
def test_inside_graceful_stop_a_second_ctrl_c_reaches_the_caller(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first press asks for the end of the epoch; the second stops at once, as a
    KeyboardInterrupt the caller sees; the caller's handler is back afterwards."""
    _ctrl_c_in_epoch_1(monkeypatch, presses=2)
    options = RunOptions(workers=0, quiet=True, results=tmp_path)
    with pytest.raises(KeyboardInterrupt), graceful_stop():
        training.train(Selection.of("repvit", STEP), f"imagefolder:{images}", TINY_RECIPE, options)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def _folder(out: Path, record: object) -> Path:
    return store.RunKey(record.data, record.recipe, record.name, record.seed).folder(out)


def _log_without_timing(folder: Path) -> list[dict]:
    lines = store.read_jsonl(folder / store.LOG)
    return [{k: v for k, v in line.items() if k not in TIMING} for line in lines]


@pytest.mark.ctrl_c
@pytest.mark.slow
def test_resume_after_ctrl_c_ends_like_an_uninterrupted_run(
    images: Path, finished: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = RunOptions(seed=3, workers=1, quiet=True, results=tmp_path)
    selection, data = Selection.of("repvit", STEP), f"imagefolder:{images}"
    save_epoch = training._save_epoch

    def save_then_ctrl_c(run: training.Run, epoch: int, summary: dict) -> None:
        save_epoch(run, epoch, summary)
        if epoch == 0:
            os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C in epoch 1

    monkeypatch.setattr(training, "_save_epoch", save_then_ctrl_c)
    with (
        pytest.raises(
            Stopped, match="stopped by Ctrl-C after epoch 1/2; last.pt holds 1"
        ) as stopped,
        graceful_stop(),  # what `roadmap train` puts around the run
    ):
        training.train(selection, data, RICH, options)
    assert stopped.value.exit_code == EXIT_INTERRUPTED
    folder = finished["folder"].relative_to(finished["folder"].parents[3])
    folder = tmp_path / folder
    assert not (folder / store.METRICS).exists()
    assert checkpoint.load(folder / store.CHECKPOINT)["epochs_done"] == 1

    monkeypatch.setattr(training, "_save_epoch", save_epoch)
    resumed = training.train(selection, data, RICH, _replace(options, resume=True))
    expected = finished["record"]
    for key in ("top1", "top5", "best_top1", "best_epoch", "ema_top1", "fused_top1"):
        assert resumed.get(key) == expected.get(key), key
    assert _log_without_timing(folder) == _log_without_timing(finished["folder"])
    a = checkpoint.load(folder / store.CHECKPOINT)
    b = checkpoint.load(finished["folder"] / store.CHECKPOINT)
    for name, tensor in b["model"].items():
        assert torch.equal(a["model"][name], tensor), name


def _replace(options: RunOptions, **changes: object) -> RunOptions:
    return dataclasses.replace(options, **changes)


@pytest.mark.slow
def test_the_record_is_complete(finished: dict) -> None:
    record, folder = finished["record"], finished["folder"]
    assert json.loads((folder / store.METRICS).read_text()) == record.to_dict()
    for key in (
        "top1",
        "top5",
        "best_top1",
        "best_top5",
        "params",
        "macs",
        "deploy_params",
        "deploy_macs",
        "train_time_s",
        "images_per_s",
        "environment",
        "spec_hash",
        "recipe_hash",
        "command",
    ):
        assert record.get(key) is not None, key
    assert record.synthetic is False
    assert record.to_dict()["lr"] == {
        "rule": "base_lr x global_batch / 512",
        "base_lr": RICH.base_lr,
        "global_batch": 8,
        "per_process_batch": 8,
        "processes": 1,
        "peak_lr": RICH.base_lr * 8 / 512,
    }
    assert load_recipe(folder / "recipe.yaml").replace(name=RICH.name) == RICH
    assert "stages" in (folder / "spec.yaml").read_text()
    assert [line["epoch"] for line in store.read_jsonl(folder / store.LOG)] == [1, 2]


@pytest.mark.slow
def test_fused_and_training_forms_agree(finished: dict, images: Path) -> None:
    record = finished["record"]
    assert record.fused_top1 == record.top1 and record.fused_disagreements == 0
    scores = evaluate_checkpoint(
        Selection.of("repvit", STEP),
        finished["folder"] / store.CHECKPOINT,
        f"imagefolder:{images}",
        RunOptions(workers=0),
    )
    assert scores.top1 == scores.fused_top1 == record.top1
    assert scores.top5 == scores.fused_top5


@pytest.mark.slow
def test_checkpoints_load_weights_only_and_know_their_network(finished: dict) -> None:
    path = finished["folder"] / store.CHECKPOINT
    state = torch.load(path, weights_only=True)
    assert state["spec_hash"] == finished["record"].spec_hash
    other = build_spec("gelu", num_classes=2, roadmap="repvit")
    with pytest.raises(RoadmapError, match=f"holds {STEP} .*; pass --upto {STEP}"):
        checkpoint.load(path, other)


def test_a_crash_while_saving_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / store.CHECKPOINT
    checkpoint.save({"format": checkpoint.CHECKPOINT_FORMAT, "epochs_done": 1}, path)

    def torn_save(state: dict, handle: object) -> None:
        handle.write(b"PK\x03\x04 half a zip file")
        raise KeyboardInterrupt  # Ctrl-C in the middle of the write

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save({"format": checkpoint.CHECKPOINT_FORMAT, "epochs_done": 2}, path)
    assert checkpoint.load(path)["epochs_done"] == 1
    assert os.listdir(tmp_path) == [store.CHECKPOINT]


def _cli(*args: str) -> object:
    return runner.invoke(app, [str(arg) for arg in args])


TINY = ("--epochs", "1", "--batch-size", "8", "--quiet")


@pytest.mark.slow
def test_run_trains_every_step_once(images: Path, tmp_path: Path) -> None:
    args = (
        "run",
        "--upto",
        "gelu",
        "--data",
        f"imagefolder:{images}",
        *TINY,
        "--results",
        tmp_path,
    )
    first = _cli(*args)
    assert first.exit_code == 0, first.output
    assert first.output.count("trained") == 2
    records = sorted(tmp_path.glob("*/*/*/seed0/metrics.json"))
    assert [path.parent.parent.name for path in records] == ["gelu", "mobilenetv3_large"]
    stamps = [path.stat().st_mtime_ns for path in records]
    second = _cli(*args)
    assert second.exit_code == 0 and second.output.count("stored") == 2, second.output
    assert [path.stat().st_mtime_ns for path in records] == stamps


def _fails_cleanly(result: object, message: str, out: Path | None) -> None:
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    if out is not None:
        assert not list(out.glob("**/metrics.json"))  # no record, not even half of one


@pytest.mark.parametrize(
    ("data", "message"),
    [("imagefolder:/no/such/folder", "does not exist"), ("imagenet", "unknown data source")],
)
def test_bad_data_paths(data: str, message: str, tmp_path: Path) -> None:
    result = _cli("train", "--upto", STEP, "--data", data, *TINY, "--results", tmp_path)
    _fails_cleanly(result, message, tmp_path)
    assert not list(tmp_path.iterdir())


def test_an_empty_data_folder(tmp_path: Path) -> None:
    (tmp_path / "data" / "train").mkdir(parents=True)
    result = _cli(
        "train", "--data", f"imagefolder:{tmp_path / 'data'}", *TINY, "--results", tmp_path / "out"
    )
    _fails_cleanly(result, "has no class folders", tmp_path)


def test_a_recipe_with_an_unknown_key(tmp_path: Path) -> None:
    recipe = tmp_path / "mine.yaml"
    recipe.write_text(load_recipe("quick").to_yaml() + "warmup: 3\n")
    result = _cli("train", "--recipe", recipe, *TINY, "--results", tmp_path)
    _fails_cleanly(result, "unknown key 'warmup'", tmp_path)


@pytest.mark.slow
def test_an_undecodable_image_stops_or_is_skipped(images: Path, tmp_path: Path) -> None:
    """Ten images at batch 4: each epoch drops a partial batch of two, so the bad image may
    never be loaded; it is found anyway, and the record never undercounts."""
    root = make_image_folder(tmp_path / "data", per_class=5, val_per_class=2)
    bad = corrupt_one_image(root)
    tiny = ("--epochs", "1", "--batch-size", "4", "--quiet")
    args = ("train", "--upto", STEP, "--data", f"imagefolder:{root}", *tiny)
    _fails_cleanly(_cli(*args, "--results", tmp_path / "a"), f"cannot decode image {bad}", tmp_path)
    result = _cli(*args, "--results", tmp_path / "b", "--bad-images", "skip")
    assert result.exit_code == 0, result.output
    (record,) = store.scan(tmp_path / "b").records
    assert record.skipped_images == 1 and str(bad) in record.skipped_files[0]
    assert record.train_images == 9


class NaNLoss(torch.nn.Module):
    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return logits.sum() * float("nan")


@pytest.mark.slow
def test_a_nan_loss(images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(setup, "criterion", lambda recipe: NaNLoss())
    result = _cli(
        "train", "--upto", STEP, "--data", f"imagefolder:{images}", *TINY, "--results", tmp_path
    )
    _fails_cleanly(result, "loss became NaN", tmp_path)
    assert not list(tmp_path.glob("*/*/*/seed0"))  # not even an empty run folder


@pytest.mark.slow
def test_a_checkpoint_from_another_step(finished: dict, images: Path) -> None:
    path = finished["folder"] / store.CHECKPOINT
    result = _cli("eval", "--upto", "gelu", "--checkpoint", path, "--data", f"imagefolder:{images}")
    _fails_cleanly(result, "not the network asked for", None)


def test_a_file_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    path.write_bytes(b"not a checkpoint")
    result = _cli("eval", "--upto", STEP, "--checkpoint", path)
    _fails_cleanly(result, "is not a readable checkpoint", tmp_path)


@pytest.mark.slow
def test_ctrl_c_in_a_terminal_finishes_the_epoch_and_resume_completes(
    images: Path, tmp_path: Path
) -> None:
    """SIGINT to the whole process group, as a terminal sends it (workers included)."""
    import subprocess
    import sys
    import time

    root = REPO
    args = [
        "train",
        "--upto",
        STEP,
        "--data",
        f"imagefolder:{images}",
        "--epochs",
        "5",
        "--batch-size",
        "8",
        "--workers",
        "1",
        "--quiet",
        "--out",
        str(tmp_path),
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "roadmap", *args],
        cwd=tmp_path,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(root)},
        stderr=subprocess.PIPE,
        text=True,
    )
    logs = tmp_path.glob(f"*/*/{STEP}/seed0/{store.LOG}")
    deadline = time.monotonic() + 120
    while not any(path.read_text() for path in logs) and time.monotonic() < deadline:
        time.sleep(0.05)
        logs = tmp_path.glob(f"*/*/{STEP}/seed0/{store.LOG}")
    os.killpg(process.pid, signal.SIGINT)  # the new session's group: this process and workers
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert "finishing this epoch" in stderr and "DataLoader worker" not in stderr
    (folder,) = tmp_path.glob(f"*/*/{STEP}/seed0")
    assert not (folder / store.METRICS).exists()
    done = checkpoint.load(folder / store.CHECKPOINT)["epochs_done"]
    assert 1 <= done < 5
    assert len(store.read_jsonl(folder / store.LOG)) == done

    resumed = _cli(*args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert [line["epoch"] for line in store.read_jsonl(folder / store.LOG)] == [1, 2, 3, 4, 5]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp", [False, True])
def test_training_on_a_gpu_ends_with_a_record(amp: bool, tmp_path: Path) -> None:
    # The whole CUDA path, up to the record: counting MACs after training once broke here
    # (fvcore traced the trained model, left on the GPU, with an input made on the CPU).
    recipe = load_recipe("quick").replace(epochs=1, batch_size=16, img_size=64)
    options = RunOptions(device="cuda", amp=amp, channels_last=True, quiet=True, results=tmp_path)
    record = training.train(Selection.of("repvit", "gelu"), "synthetic:64", recipe, options)
    assert (_folder(tmp_path, record) / store.METRICS).exists()
    assert record.environment.device == torch.cuda.get_device_name()
    assert record.deploy_macs > 0


def test_each_epoch_scores_the_deploy_form_once_and_the_last_both_forms(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One evaluation pass per epoch and none after: every epoch scores the fused form, the
    last one the training form beside it, and the record takes its numbers from that pass."""
    from roadmap.arch.reparam import unfused_norms

    passes = []
    real = training.evaluate

    def counted(models, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        scores = real(models, *args, **kwargs)
        passes.append(({k: bool(unfused_norms(m)) for k, m in models.items()}, scores))
        return scores

    monkeypatch.setattr(training, "evaluate", counted)
    options = RunOptions(workers=0, quiet=True, results=tmp_path)
    record = training.train(Selection.of("repvit", "separate_mixers"), f"imagefolder:{images}",
                            TINY_RECIPE, options)  # fmt: skip
    # which models each pass scored, and whether each still had BatchNorm layers (unfused)
    assert [p[0] for p in passes] == [{"": False}, {"": False, "train_": True}]
    last = passes[-1][1]
    assert (record.top1, record.fused_top1) == (last["train_top1"], last["top1"])
    assert record.fused_disagreements == last["train_disagreements"] == 0
    assert record.environment.channels_last is True  # the CPU defaults, kept in the record
    assert record.environment.fused_optimizer is True


def test_memory_format_defaults_to_channels_last_on_cpu_only() -> None:
    assert RunOptions().channels_last is True
    assert RunOptions(device="cuda").channels_last is False
    assert RunOptions(channels_last=False).channels_last is False
    assert RunOptions(device="cuda", channels_last=True).channels_last is True
    assert dataclasses.replace(RunOptions(), seed=3).channels_last is True


@pytest.mark.slow  # a training behaviour the full suite checks; the fast tier trains once elsewhere
def test_eval_every_scores_fewer_epochs_and_trains_the_same_weights(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """eval_every=3 over 3 epochs scores only the last; the trained weights are exactly those
    of the run scored every epoch (each epoch re-seeds), so both are one run: same hash, same
    folder, and the log says which epochs were scored."""
    from roadmap.results import store
    from roadmap.train.identity import recipe_label
    from roadmap.train.recipe import recipe_hash

    passes = []
    real = training.evaluate

    def counted(models, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        passes.append(sorted(models))
        return real(models, *args, **kwargs)

    monkeypatch.setattr(training, "evaluate", counted)
    every = TINY_RECIPE.replace(epochs=3)
    last_only = every.replace(eval_every=3)
    assert recipe_hash(last_only) == recipe_hash(every)
    assert recipe_label(load_recipe("fashion").replace(eval_every=1)) == "fashion"
    weights, records = [], []
    for recipe in (every, last_only):
        passes.clear()
        options = RunOptions(workers=0, quiet=True, results=tmp_path / str(recipe.eval_every))
        records.append(
            training.train(Selection.of("repvit", STEP), f"imagefolder:{images}", recipe, options)
        )
        folder = next((tmp_path / str(recipe.eval_every)).rglob(store.CHECKPOINT)).parent
        state = torch.load(folder / store.CHECKPOINT, weights_only=True)["model"]
        weights.append({k: v.clone() for k, v in state.items()})
        log = [json.loads(line) for line in (folder / store.LOG).read_text().splitlines()]
        assert [("top1" in line) for line in log] == [recipe.eval_every == 1] * 2 + [True]
        assert len(passes) == (3 if recipe.eval_every == 1 else 1)
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert records[0].top1 == records[1].top1 and records[1].best_epoch == 3
    with pytest.raises(RoadmapError, match="'eval_every' is out of range"):
        load_recipe("quick", settings=["eval_every=0"])
