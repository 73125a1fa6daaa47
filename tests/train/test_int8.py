"""int8 accuracy: the int8 ExecuTorch program of a trained checkpoint, scored image by image
beside its float32 deploy form; stored in the run's record; shown by `table --int8`; a broken
quantization is refused, not reported as an accuracy drop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from scipy import stats as scipy_stats
from typer.testing import CliRunner

from roadmap.arch.selection import Selection
from roadmap.cli import app
from roadmap.errors import RoadmapError
from roadmap.results import store
from roadmap.study import comparison, plan
from roadmap.study.stats import paired_delta
from roadmap.study.trained import int8_of
from roadmap.train import int8 as int8_eval
from roadmap.train import loop as training
from roadmap.train.evaluate import evaluate_checkpoint
from roadmap.train.recipe import load_recipe
from roadmap.train.run_options import RunOptions
from tests.helpers import make_image_folder, make_record, store_record

MOBILE_MISSING = 'ExecuTorch is not installed (pip install -e ".[mobile]")'
SMALL = Selection.of(
    "repvit", "alternating_se", size="w0.25d0.1"
)  # every layer kind, lowers in seconds
RECIPE = load_recipe("quick").replace(epochs=1, batch_size=8, img_size=32)
runner = CliRunner()


def test_paired_delta_is_the_wald_interval_and_mcnemars_exact_test() -> None:
    d = paired_delta(lost=30, gained=10, images=1000)
    assert d.delta == pytest.approx(-2.0)
    half = 1.959964 * (40 - 20**2 / 1000) ** 0.5 / 1000 * 100
    assert (d.low, d.high) == (pytest.approx(-2.0 - half), pytest.approx(-2.0 + half))
    assert d.p_value == pytest.approx(scipy_stats.binomtest(10, 40, 0.5).pvalue)
    assert d.finding  # 30 against 10 discordant images: p = 0.002
    same = paired_delta(lost=5, gained=5, images=1000)
    assert same.delta == 0 and not same.finding and same.low < 0 < same.high
    assert paired_delta(0, 0, 10).p_value == 1.0
    with pytest.raises(ValueError, match="impossible counts"):
        paired_delta(lost=8, gained=5, images=10)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    pytest.importorskip("executorch", reason=MOBILE_MISSING)
    images = make_image_folder(tmp_path_factory.mktemp("images"))
    out = tmp_path_factory.mktemp("results")
    options = RunOptions(workers=0, quiet=True, results=out)
    record = training.train(SMALL, f"imagefolder:{images}", RECIPE, options)
    folder = store.RunKey(record.data, record.recipe, record.name, record.seed).folder(out)
    return {"data": f"imagefolder:{images}", "folder": folder, "record": record, "out": out}


def score(trained: dict) -> dict:
    """The checkpoint's int8 scores, and the program they came from."""
    programs = []
    real = int8_eval.executorch.program_bytes

    def kept(model, example, **kwargs):  # noqa: ANN001, ANN003, ANN202
        programs.append((tuple(example.shape), real(model, example, **kwargs)))
        return programs[-1][1]

    path = trained["folder"] / store.CHECKPOINT
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(int8_eval.executorch, "program_bytes", kept)
        scores = int8_eval.evaluate_int8(SMALL, path, trained["data"], RunOptions(workers=0),
                                         calibration=8, batch=8)  # fmt: skip
    ((shape, program),) = programs
    return {"scores": scores, "program": program, "shape": shape, "path": path}


@pytest.mark.slow
@pytest.mark.heavy
def test_int8_scores_both_forms_on_the_same_images_and_a_broken_program_is_refused(
    trained: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One test, so that the training and the lowering (over 20 s) happen once whichever
    pytest-xdist worker runs it: the scores land in the record and the table; then the same
    program with its outputs scrambled (sign and scale of every logit wrong) is refused as a
    bug to report, not reported as an accuracy drop."""
    scored = score(trained)
    scores, path = scored["scores"], scored["path"]
    assert scored["shape"] == (8, 3, 32, 32)  # the program takes the batch asked for
    fp32 = evaluate_checkpoint(SMALL, path, trained["data"], RunOptions(workers=0))
    assert scores.images == fp32.images == 8
    assert scores.float_top1 == fp32.fused_top1  # the reference is the fused float32 form
    assert scores.int8_top1 - scores.float_top1 == pytest.approx(
        100 * (scores.gained - scores.lost) / scores.images
    )
    assert scores.calibration_images == 8 and scores.sqnr_db > 0
    assert scores.spec_hash == trained["record"].spec_hash
    stored = int8_eval.store_in_record(scores, path)
    assert stored == trained["folder"] / store.METRICS
    record = store.read_record(trained["folder"])
    assert record.int8 == scores
    assert record.top1 == trained["record"].top1  # nothing else in the record moved
    # the table finds it: Δ pooled over the seeds scored
    found = store.scan(trained["out"]).records
    assert int8_of(found, SMALL).delta.images == 8

    real = int8_eval.executorch.load_batched

    def scrambled(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        run = real(*args, **kwargs)
        return lambda x: -8 * run(x)

    monkeypatch.setattr(int8_eval.executorch, "program_bytes", lambda *a, **k: scored["program"])
    monkeypatch.setattr(int8_eval.executorch, "load_batched", scrambled)
    with pytest.raises(RoadmapError, match="logits are mostly noise"):
        int8_eval.evaluate_int8(SMALL, path, trained["data"], RunOptions(workers=0),
                                calibration=8, batch=8)  # fmt: skip


def test_int8_is_only_stored_in_the_record_of_the_same_network(tmp_path: Path) -> None:
    folder = store_record(tmp_path, make_record(["mobilenetv3_large"], 0, 70.0))
    scores = _scores(spec_hash="f" * 12)
    with pytest.raises(RoadmapError, match="record of another network"):
        int8_eval.store_in_record(scores, folder / store.CHECKPOINT)
    assert store.read_record(folder).int8 is None
    assert int8_eval.store_in_record(scores, tmp_path / "elsewhere.pt") is None


def test_table_int8_shows_the_pooled_delta_with_its_noise_mark(tmp_path: Path) -> None:
    """Two seeds' images pool into one paired Δ; a Δ that McNemar's test cannot tell from zero
    carries the noise mark, one it can does not."""
    cases = ((["mobilenetv3_large"], 3, 2), (["mobilenetv3_large", "gelu"], 40, 5))
    for seed in (0, 1):
        for steps, lost, gained in cases:
            spec_hash = make_record(steps, seed, 70.0).spec_hash
            extra = _scores(spec_hash=spec_hash, lost=lost, gained=gained).to_dict()
            store_record(tmp_path, make_record(steps, seed, 70.0, int8=extra))
    result = runner.invoke(app, ["table", "--upto", "gelu", "--no-latency", "--int8",
                                 "--results", str(tmp_path), "--data", "digits", "--recipe",
                                 "quick", "--format", "json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)["rows"]}
    base, gelu = rows["mobilenetv3_large"], rows["gelu"]
    assert base["int8_images"] == gelu["int8_images"] == 2000
    assert base["int8_delta_top1"] == pytest.approx(100 * (4 - 6) / 2000)
    assert gelu["int8_delta_top1"] == pytest.approx(100 * (10 - 80) / 2000)
    assert base["int8_delta_p_value"] > 0.05 > gelu["int8_delta_p_value"]
    study = comparison.collect(plan.prefixes(Selection.of("repvit", "gelu")), results=tmp_path,
                               data="digits", recipe="quick", counts=False, int8=True)  # fmt: skip
    from roadmap.report.study_table import study_markdown

    text = study_markdown(study, "t")
    assert "int8 Δ top-1" in text and "≈-0.10" in text and "| -3.50 [" in text


def test_eval_int8_needs_a_checkpoint_and_the_cpu(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "--upto", "gelu", "--pretrained", "--int8"])
    assert result.exit_code == 2
    assert "--int8 scores a trained checkpoint" in result.output
    args = ["eval", "--upto", "gelu", "--checkpoint", str(tmp_path / "last.pt"), "--int8"]
    result = runner.invoke(app, [*args, "--device", "cuda"])
    assert result.exit_code == 2
    assert "--int8 runs the ExecuTorch program on the CPU" in result.output


def _scores(spec_hash: str, lost: int = 3, gained: int = 1) -> int8_eval.Int8Scores:
    return int8_eval.Int8Scores(
        name="x", spec_hash=spec_hash, weights="model", images=1000, float_top1=80.0,
        int8_top1=80.0 + 100 * (gained - lost) / 1000, lost=lost, gained=gained,
        agreement=99.0, sqnr_db=20.0, calibration_images=512, quantization="int8",
        runtime="executorch", threads=2, measured_at="2026-11-30T00:00:00+00:00",
    )  # fmt: skip


def test_calibration_images_are_training_images_through_the_evaluation_transform(
    tmp_path: Path,
) -> None:
    from roadmap.train.data import calibration_split, load_datasets
    from roadmap.train.sources import parse_source

    images = make_image_folder(tmp_path)
    data = load_datasets(parse_source(f"imagefolder:{images}"), RECIPE.replace(hflip=1.0))
    picked = calibration_split(data, RECIPE, 5)
    assert len(picked) == 5 and len(set(picked.indices)) == 5
    assert picked.dataset.samples == data.train.samples  # the training split, not the test one
    x, _ = picked[0]
    again, _ = picked[0]
    assert torch.equal(x, again)  # no random augmentation
    assert calibration_split(data, RECIPE, 5).indices == picked.indices  # the same draw
    assert data.train.transform is not picked.dataset.transform  # the split is untouched


def test_table_int8_checks_its_timing_settings_before_any_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without ExecuTorch (or on a GPU) `table --int8` fails before building a network, not
    after timing the float32 ones."""
    import dataclasses

    from roadmap.measure import latency, runtimes

    def missing() -> str:
        raise RoadmapError('ExecuTorch is not installed: pip install -e ".[mobile]"')

    built = []
    absent = dataclasses.replace(runtimes.get_runtime("executorch"), installed=missing)
    monkeypatch.setitem(runtimes.RUNTIMES._items, "executorch", absent)
    monkeypatch.setattr(comparison, "build", built.append)
    variants = plan.prefixes(Selection.of("repvit", "gelu"))
    with pytest.raises(RoadmapError, match="not installed"):
        comparison.collect(variants, latency_settings=latency.LatencySettings(), int8=True)
    assert built == []
    comparison.collect(variants, latency_settings=None, counts=False, int8=True)  # no timing
