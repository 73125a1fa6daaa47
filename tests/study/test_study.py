"""The study layer: variants, accuracy from the store, deltas and their noise flags."""

import dataclasses
import statistics
from types import SimpleNamespace

import pytest

import roadmap
from roadmap.arch.selection import Selection
from roadmap.measure.counts import Counts
from roadmap.report import study_table
from roadmap.results import store
from roadmap.study import agreement, comparison, plan, stats, trained
from tests.helpers import fake_record


def test_accuracy_averages_seeds_of_the_same_network(tmp_path):
    steps = roadmap.resolve_steps("gelu", roadmap="repvit")
    for seed, top1 in [(0, 90.0), (1, 92.0), (2, 94.0)]:
        fake_record(tmp_path, steps, seed, top1)
    fake_record(tmp_path, steps, 3, 10.0, spec_hash="0" * 12)  # an older architecture
    gelu, widen = Selection(tuple(steps), "repvit"), Selection.of("repvit", "widen")
    quick = store.scan(tmp_path, data="digits", recipe="quick").records
    acc = trained.accuracy_of(quick, gelu)
    assert (acc.mean, acc.std, acc.n, acc.seeds) == (92.0, 2.0, 3, (0, 1, 2))
    assert trained.accuracy_of(store.scan(tmp_path, recipe="paper").records, gelu) is None
    assert trained.accuracy_of(quick, widen) is None


def row(name, params, latency=None, iqr=0.0, values=()):
    counts = Counts(params, None, params, params * 10, 224)
    lat = SimpleNamespace(step=name, median_ms=latency, iqr_ms=iqr) if latency is not None else None
    acc = None
    if values:
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        ci = stats.mean_ci(values)
        acc = trained.Accuracy(ci.mean, std, len(values), tuple(range(len(values))), values, ci)
    return comparison.Row(plan.Variant(Selection((name,), "repvit"), name), counts, lat, acc)


def test_deltas_and_noise_rules():
    rows = [
        row("a", 100, latency=10.0, iqr=1.0, values=(69.5, 70.0, 70.5)),
        row("b", 120, latency=10.5, iqr=1.0, values=(71.0, 71.5, 72.0)),  # Δlat 0.5 < IQR 1.0
        row("c", 90, latency=14.0, iqr=1.0, values=(71.0, 72.0, 72.7)),  # Δtop1 +0.4, spread 0.85
        row("d", 90, latency=14.0, iqr=1.0, values=(75.0,)),  # a single seed: never a finding
    ]
    comparison.fill_deltas(rows)
    b, c, d = rows[1].vs_previous, rows[2].vs_previous, rows[3].vs_previous
    assert b["deploy_params"].value == 20 and not b["deploy_params"].noise
    assert b["latency_ms"].noise and b["latency_ms"].value == pytest.approx(0.5)
    assert not b["top1"].noise and b["top1"].p_value < 0.05  # +1.5 with a spread of 0.5
    assert not c["latency_ms"].noise and c["top1"].noise and c["top1"].p_value > 0.05
    assert c["top1"].seeds_needed > 3  # what it would take to settle +0.4
    assert d["top1"].noise and d["top1"].p_value is None and d["top1"].seeds_needed is None
    assert rows[3].vs_baseline["deploy_params"].value == -10
    assert rows[0].vs_previous == {} and rows[0].vs_baseline == {}


def test_confidence_interval_and_welch_against_hand_computation():
    """Values computed here from the textbook formulas, not through roadmap.study.stats."""
    from scipy import stats as scipy_stats

    a, b = (90.0, 92.0, 94.0), (93.0, 95.5, 96.0, 97.5)
    ci = stats.mean_ci(a)
    half = scipy_stats.t.ppf(0.975, 2) * 2.0 / 3**0.5  # t(0.975, n-1) · s / √n, s = 2
    assert (ci.low, ci.high) == pytest.approx((92 - half, 92 + half))
    assert (round(ci.low, 3), round(ci.high, 3)) == (87.032, 96.968)
    va, vb = statistics.variance(a), statistics.variance(b)
    se2a, se2b = va / 3, vb / 4
    t = (statistics.fmean(b) - statistics.fmean(a)) / (se2a + se2b) ** 0.5
    dof = (se2a + se2b) ** 2 / (se2a**2 / 2 + se2b**2 / 3)  # Welch-Satterthwaite
    expected = 2 * scipy_stats.t.sf(abs(t), dof)
    assert stats.welch_p(a, b) == pytest.approx(expected, rel=1e-9)
    rows = [row("a", 1, values=a), row("b", 1, values=b)]
    comparison.fill_deltas(rows)
    data = study_table.row_data(rows[1])
    assert data["delta_prev_top1_p_value"] == pytest.approx(expected, rel=1e-9)
    assert data["top1_ci95_low"] == pytest.approx(stats.mean_ci(b).low)


def test_seeds_needed_matches_cohens_table():
    """A difference of half a standard deviation needs 64 per group at p < 0.05 and 80 %
    power (Cohen 1988, Table 2.4.1); one of a full standard deviation 17."""
    a = (70.0, 71.0, 72.0)  # variance 1
    assert stats.seeds_needed(a, tuple(v + 0.5 for v in a)) == 64
    assert stats.seeds_needed(a, tuple(v + 1.0 for v in a)) == 17
    assert stats.seeds_needed(a, a) is None and stats.seeds_needed((70.0,), a) is None
    assert stats.seeds_needed(a, tuple(v + 0.01 for v in a)) == stats.MAX_SEEDS_SHOWN + 1


def test_baseline_must_be_a_row():
    with pytest.raises(roadmap.RoadmapError, match="baseline 'zzz' is not a row"):
        comparison.fill_deltas([row("a", 1), row("b", 2)], baseline="zzz")


def test_leave_one_out_names_what_cannot_be_built():
    variants = {v.name: v for v in plan.leave_one_out("repvit")}
    assert variants["alternating_se"].selection.steps == tuple(
        roadmap.resolve_steps(roadmap="repvit")
    )
    missing = variants["alternating_se-separate_mixers"]
    assert not missing.buildable and "separate_mixers" in missing.reason
    assert missing.about == "separate_mixers"
    assert variants["alternating_se-kernel_3x3"].buildable and len(variants) == 11
    assert "kernel_3x3" in variants  # without its last step, the roadmap is a shorter prefix


def test_only_one_applies_each_step_to_the_baseline():
    variants = {v.name: v for v in plan.only_one("repvit")}
    assert variants["mobilenetv3_large+widen"].selection.steps == ("mobilenetv3_large", "widen")
    assert not variants["mobilenetv3_large+deeper_downsampling"].buildable  # needs RepViT blocks
    assert "gelu" in variants  # the baseline plus its next step is a prefix


@pytest.mark.slow  # over 1 s: the full suite runs it
def test_paper_numbers_only_on_roadmap_prefixes():
    rows = comparison.collect(plan.leave_one_out("repvit", "expansion_2")).rows
    by_name = {r.variant.name: r for r in rows}
    assert by_name["expansion_2"].paper_speed == 0.65
    assert by_name["expansion_2-gelu"].paper_speed is None


# --- agreement with the paper's latency column --------------------------------------------


def _timed(median, iqr=0.02):
    from roadmap.measure.latency import LatencyRecord

    p25, p75 = median - iqr / 2, median + iqr / 2
    return LatencyRecord("x", ["x"], True, median, p25, p75, iqr, p25, 5, None, [])


def test_agreement_counts_signs_outside_noise_and_ranks_every_timed_step():
    paper = [None, 1.0, 0.8, 0.9, 0.7]
    ours = [_timed(3.0), _timed(2.0), _timed(1.5), _timed(1.8), _timed(1.81)]
    got = agreement.paper_agreement(ours, paper)
    # 1.0->0.8 and 0.8->0.9 agree; 0.9->0.7 is matched by +0.01, within the 0.02 IQR: left out;
    # the first row has no paper number, so its change is not compared at all
    assert (got.same_sign, got.counted, got.within_noise, got.steps) == (2, 2, 1, 4)
    assert got.rho == pytest.approx(0.4)  # ranks (4,1,2,3) against (4,2,3,1)
    assert "Δ sign 2/2 steps (1 more within noise" in got.describe()


def test_agreement_reports_a_disagreement_and_needs_two_timed_steps():
    got = agreement.paper_agreement([_timed(1.0), _timed(2.0)], [1.0, 0.5])
    assert (got.same_sign, got.counted, got.rho) == (0, 1, None)  # two points: no ranking
    assert agreement.paper_agreement([_timed(1.0), None], [1.0, 0.5]) is None
    with pytest.raises(ValueError):
        agreement.paper_agreement([_timed(1.0)], [])


def test_accuracy_agreement_counts_findings_only_and_ranks_every_trained_step():
    from roadmap.arch.paper import PaperResult

    rows = [
        row("a", 1, values=(60.0, 60.5, 61.0)),
        row("b", 1, values=(65.0, 65.5, 66.0)),  # +5, a finding; the paper's +1.0 agrees
        row("c", 1, values=(62.0, 62.5, 63.0)),  # -3, a finding; the paper's +0.5 disagrees
        row("d", 1, values=(62.1, 63.5, 62.4)),  # +0.5 within noise: left out
        row("e", 1, values=(70.0, 70.5, 71.0)),  # the paper's Δ is 0: no sign to agree with
        row("f", 1),  # not trained: not compared
    ]
    for r, top1 in zip(rows, (70.0, 71.0, 71.5, 72.0, 72.0, 73.0), strict=True):
        r.paper = PaperResult(top1=top1)
    comparison.fill_deltas(rows)
    got = comparison.accuracy_agreement(rows)
    assert (got.same_sign, got.counted, got.within_noise, got.steps) == (1, 2, 1, 5)
    ours, paper = [60.5, 65.5, 62.5, 62.67, 70.5], [70.0, 71.0, 71.5, 72.0, 72.0]
    assert got.rho == pytest.approx(stats.spearman(ours, paper))  # every trained step ranked
    said = "Agreement with the paper's top-1 (paper top-1 %: ImageNet-1K, no distillation): Δ sign"
    assert got.describe().startswith(said + " 1/2 ")
    assert "findings (1 more within noise" in got.describe()
    assert comparison.Study.of(rows).accuracy_agreement == got
    rows[1].accuracy = rows[3].accuracy = rows[4].accuracy = None  # no two trained in a row
    alone = comparison.accuracy_agreement(rows)
    assert (alone.counted, alone.steps, alone.rho) == (0, 2, None)
    rows[2].accuracy = None
    assert comparison.accuracy_agreement(rows) is None  # one trained step: nothing to compare


def test_paper_numbers_belong_to_prefixes_and_family_members_only():
    assert comparison.paper_numbers(Selection.of("repvit", "separate_mixers")) == (68.3, 0.81)
    assert comparison.paper_numbers(Selection.of("repvit", "mobilenetv3_large")) == (None, None)
    assert comparison.paper_numbers(Selection.of("repvit", "widen", skip=("gelu",))) == (None, None)
    assert comparison.paper_numbers(Selection.of("repvit", size="m1_0")) == (78.6, 1.0)


def test_the_papers_control_carries_the_papers_numbers():
    """One table of paper numbers: the control (§3.2) reaches a row like any step does."""
    from roadmap_steps.repvit import CONTROL

    rows = comparison.collect(plan.prefixes(Selection(CONTROL, "repvit")), counts=False).rows
    assert rows[-1].variant.name == "widen-separate_mixers"
    assert (rows[-1].paper_top1, rows[-1].paper_speed) == (73.0, 0.91)
    assert rows[-2].paper_top1 is None  # gelu+expansion_2 without separate_mixers: never measured


def test_a_network_counted_once_is_not_built_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Counts are kept per network (spec, resolution, the kinds' identities) in the process:
    a second table of the same networks builds nothing; another resolution, or a kind
    registered anew, is counted again."""
    from roadmap.arch import blocks, builder

    variants = plan.prefixes(Selection.of("repvit", "gelu"))
    first = comparison.collect(variants, latency_settings=None, img_size=64)
    built = []
    real = builder.build
    monkeypatch.setattr(builder, "build", lambda spec: built.append(spec) or real(spec))
    again = comparison.collect(variants, latency_settings=None, img_size=64)
    assert built == [] and [r.counts for r in again.rows] == [r.counts for r in first.rows]
    comparison.collect(variants, latency_settings=None, img_size=96)
    assert len(built) == 2  # another resolution: both networks counted anew
    kind = blocks.get_block_kind("inverted_residual")
    monkeypatch.setitem(blocks.KINDS._items, "inverted_residual", dataclasses.replace(kind))
    comparison.collect(variants, latency_settings=None, img_size=64)
    assert len(built) == 4  # the kind is another object now: counted again
