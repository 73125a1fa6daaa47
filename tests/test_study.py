"""The study layer: variants, accuracy from the store, deltas and their noise flags."""

from types import SimpleNamespace

import pytest

import roadmap
from roadmap import selection, study
from roadmap.measure import Counts
from roadmap.selection import Selection
from tests.records import make_record, store


def fake_record(root, steps, seed, top1, spec_hash=None):
    """A finished run in the store, as `roadmap train` writes it."""
    extra = {"spec_hash": spec_hash} if spec_hash else {}
    store(root, make_record(list(steps), seed, top1, **extra))


def test_read_accuracy_averages_seeds_of_the_same_network(tmp_path):
    steps = roadmap.resolve_steps("gelu")
    for seed, top1 in [(0, 90.0), (1, 92.0), (2, 94.0)]:
        fake_record(tmp_path, steps, seed, top1)
    fake_record(tmp_path, steps, 3, 10.0, spec_hash="0" * 12)  # an older architecture
    gelu, widen = Selection(tuple(steps)), Selection.of("widen")
    acc = study.read_accuracy(tmp_path, "digits", "quick", gelu)
    assert (acc.mean, acc.std, acc.n, acc.seeds) == (92.0, 2.0, 3, (0, 1, 2))
    assert study.read_accuracy(tmp_path, "digits", "paper", gelu) is None
    assert study.read_accuracy(tmp_path, "digits", "quick", widen) is None


def row(name, params, latency=None, iqr=0.0, top1=None, std=0.0, n=1):
    counts = Counts(params, None, params, params * 10, 224)
    lat = SimpleNamespace(step=name, median_ms=latency, iqr_ms=iqr) if latency is not None else None
    acc = study.Accuracy(top1, std, n, tuple(range(n))) if top1 is not None else None
    return study.Row(selection.Variant(Selection((name,)), name), counts, lat, acc)


def test_deltas_and_noise_rules():
    rows = [
        row("a", 100, latency=10.0, iqr=1.0, top1=70.0, std=0.5, n=3),
        row("b", 120, latency=10.5, iqr=1.0, top1=71.5, std=0.5, n=3),  # Δlat 0.5 < IQR 1.0
        row("c", 90, latency=14.0, iqr=1.0, top1=71.9, std=0.5, n=3),  # Δtop1 0.4 < 2·0.5
        row("d", 90, latency=14.0, iqr=1.0, top1=75.0, n=1),  # a single seed: never a finding
    ]
    study.fill_deltas(rows)
    b, c, d = rows[1].vs_previous, rows[2].vs_previous, rows[3].vs_previous
    assert b["deploy_params"].value == 20 and not b["deploy_params"].noise
    assert b["latency_ms"].noise and b["latency_ms"].value == pytest.approx(0.5)
    assert not b["top1"].noise  # +1.5 > 2 · 0.5
    assert not c["latency_ms"].noise and c["top1"].noise
    assert d["top1"].noise
    assert rows[3].vs_baseline["deploy_params"].value == -10
    assert rows[0].vs_previous == {} and rows[0].vs_baseline == {}


def test_baseline_must_be_a_row():
    with pytest.raises(roadmap.RoadmapError, match="baseline 'zzz' is not a row"):
        study.fill_deltas([row("a", 1), row("b", 2)], baseline="zzz")


def test_leave_one_out_names_what_cannot_be_built():
    variants = {v.name: v for v in selection.leave_one_out()}
    assert variants["alternating_se"].selection.steps == tuple(roadmap.resolve_steps())
    missing = variants["alternating_se-separate_mixers"]
    assert not missing.buildable and "separate_mixers" in missing.reason
    assert missing.about == "separate_mixers"
    assert variants["alternating_se-kernel_3x3"].buildable and len(variants) == 11
    assert "kernel_3x3" in variants  # without its last step, the roadmap is a shorter prefix


def test_only_one_applies_each_step_to_the_baseline():
    variants = {v.name: v for v in selection.only_one()}
    assert variants["mobilenetv3_large+widen"].selection.steps == ("mobilenetv3_large", "widen")
    assert not variants["mobilenetv3_large+deeper_downsampling"].buildable  # needs RepViT blocks
    assert "gelu" in variants  # the baseline plus its next step is a prefix


def test_paper_numbers_only_on_roadmap_prefixes():
    rows = study.collect(selection.leave_one_out("expansion_2"))
    by_name = {r.variant.name: r for r in rows}
    assert by_name["expansion_2"].paper_latency_ms == 0.65
    assert by_name["expansion_2-gelu"].paper_latency_ms is None
