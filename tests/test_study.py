"""The study layer: variants, accuracy from the store, deltas and their noise flags."""

from types import SimpleNamespace

import pytest

import roadmap
from roadmap import study
from roadmap.measure import Counts
from roadmap.results import write_json


def fake_record(root, name, steps, seed, top1, num_classes=10, spec_hash=None):
    """A finished run in the store, as `roadmap train` writes it (only the fields read)."""
    spec = roadmap.build_spec(steps=steps, num_classes=num_classes)
    record = {
        "data": "digits",
        "recipe": "quick",
        "name": name,
        "seed": seed,
        "steps": list(steps),
        "spec_hash": spec_hash or roadmap.spec_hash(spec),
        "num_classes": num_classes,
        "top1": top1,
    }
    write_json(root / "digits" / "quick" / name / f"seed{seed}" / "metrics.json", record)


def test_read_accuracy_averages_seeds_of_the_same_network(tmp_path):
    steps = roadmap.resolve_steps("gelu")
    for seed, top1 in [(0, 90.0), (1, 92.0), (2, 94.0)]:
        fake_record(tmp_path, "gelu", steps, seed, top1)
    fake_record(tmp_path, "gelu", steps, 3, 10.0, spec_hash="0" * 12)  # an older architecture
    acc = study.read_accuracy(tmp_path, "digits", "quick", steps)
    assert (acc.mean, acc.std, acc.n, acc.seeds) == (92.0, 2.0, 3, (0, 1, 2))
    assert study.read_accuracy(tmp_path, "digits", "paper", steps) is None
    assert study.read_accuracy(tmp_path, "digits", "quick", roadmap.resolve_steps("widen")) is None


def row(name, params, latency=None, iqr=0.0, top1=None, std=0.0, n=1):
    counts = Counts(params, None, params, params * 10, 224)
    lat = SimpleNamespace(median_ms=latency, iqr_ms=iqr) if latency is not None else None
    acc = study.Accuracy(top1, std, n, tuple(range(n))) if top1 is not None else None
    return study.Row(study.Variant(name, (name,), name), counts, lat, acc)


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
    variants = {v.name: v for v in study.leave_one_out()}
    assert variants["alternating_se"].steps == tuple(roadmap.resolve_steps())
    missing = variants["-separate_mixers"]
    assert missing.steps is None and "separate_mixers" in missing.reason
    assert variants["-kernel_3x3"].steps is not None and len(variants) == 11


def test_only_one_applies_each_step_to_the_baseline():
    variants = {v.name: v for v in study.only_one()}
    assert variants["+widen"].steps == ("mobilenetv3_large", "widen")
    assert variants["+deeper_downsampling"].steps is None  # needs the RepViT block first


def test_paper_numbers_only_on_roadmap_prefixes():
    rows = study.collect(study.leave_one_out("expansion_2"))
    by_name = {r.variant.name: r for r in rows}
    assert by_name["expansion_2"].paper_latency_ms == 0.65
    assert by_name["-gelu"].paper_latency_ms is None
