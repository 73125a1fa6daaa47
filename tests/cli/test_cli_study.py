"""`roadmap table`, `ablate`, `explain` and `walkthrough` as a user runs them."""

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from roadmap.cli import app
from tests.helpers import fake_record

runner = CliRunner()


def run(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def stdout(*args: str) -> str:
    """What a command prints for machines (stderr holds notes for people)."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def run_json(*args: str):
    """The JSON document a command prints (stdout only: warnings, such as a busy machine's,
    go to stderr)."""
    return json.loads(stdout(*args, "--format", "json"))


@pytest.mark.slow
def test_table_formats_round_trip():
    base = ["table", "--upto", "widen", "--no-latency"]
    rows = run_json(*base)["rows"]
    assert [r["name"] for r in rows][-1] == "widen" and len(rows) == 5
    assert rows[4]["paper_top1"] == 73.5 and rows[3]["paper_top1"] is None
    assert rows[0]["deploy_param_count"] == 5_470_832
    assert rows[2]["delta_prev_deploy_params"] == 3_927_504 - 5_470_832
    parsed = list(csv.DictReader(io.StringIO(stdout(*base, "--format", "csv"))))
    assert [r["name"] for r in parsed] == [r["name"] for r in rows]
    assert [int(r["deploy_param_count"]) for r in parsed] == [r["deploy_param_count"] for r in rows]
    md = stdout(*base, "--format", "markdown").splitlines()
    table = [line for line in md if line.startswith("| ")]
    assert len(table) == 1 + 5 and "| widen | 5.44 |" in table[-1]
    assert "\\toprule" in run(*base, "--format", "latex")


@pytest.mark.slow  # over 1 s: the full suite runs it
def test_table_measures_latency_with_its_conditions():
    args = ["table", "--upto", "separate_mixers", "--iters", "2", "--format", "json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "counting and timing 3 networks" in result.stderr  # minutes of silence otherwise
    out = json.loads(result.stdout)
    assert out["environment"]["batch"] == 1 and out["environment"]["img_size"] == 224
    assert all(r["infer_step_time"] > 0 for r in out["rows"])
    assert "delta_prev_latency_ms_noise" in out["rows"][1]
    # the paper times gelu and separate_mixers: one change to compare, two steps to rank
    agreement = out["paper_agreement"]
    assert agreement["steps"] == 2 and agreement["counted"] + agreement["within_noise"] == 1


def test_table_shows_accuracy_from_the_store(tmp_path):
    for name in ("mobilenetv3_large", "gelu"):
        from roadmap import resolve_steps

        for seed, top1 in [(0, 80.0), (1, 82.0)]:
            fake_record(
                tmp_path, resolve_steps(name, roadmap="repvit"), seed, top1 + (name == "gelu") * 5
            )
    out = run("table", "--upto", "gelu", "--no-latency", "--results", str(tmp_path))
    out = " ".join(out.split())  # unwrapped
    half = 12.706 * 1.0  # t(0.975, 1) · s/√n with s = √2, n = 2
    assert f"81.0 [{81 - half:.1f}, {81 + half:.1f}] (2)" in out and "86.0 [" in out
    # +5 points over two seeds a side: Welch's p = 0.07, so not yet a finding, and the table
    # says what it would take to settle it
    assert "≈+5.0" in out and "gelu +5.0: ~3 seeds" in out


@pytest.mark.slow
def test_ablate_leave_one_out_reports_the_unbuildable():
    out = run("ablate", "--leave-one-out", "--upto", "deeper_downsampling", "--no-latency")
    assert "-kernel_3x3" not in out and "deeper_downsampling-widen" in out
    assert "cannot be built" in out
    assert "deeper_downsampling-separate_mixers: deeper_downsampling" in out


def test_ablate_needs_exactly_one_mode():
    for args in (["ablate"], ["ablate", "--leave-one-out", "--only-one"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "choose one of" in result.output


def test_explain_shows_lesson_diff_block_numbers_and_command():
    out = run("explain", "separate_mixers", "--no-latency", "--markdown")
    assert "token mixer" in out and "68.3" in out and "0.81" in out
    assert "! kind: inverted_residual -> repvit  [14 places" in out
    assert (
        "RepDepthwise" in out.split("# after")[1] and "RepDepthwise" not in out.split("# after")[0]
    )
    assert "roadmap build --upto separate_mixers" in out
    assert "| **change** | -1,543,328 |" in out


@pytest.mark.slow
def test_explain_with_latency_says_where_the_time_goes():
    out = run("explain", "gelu", "--iters", "2", "--markdown")
    section = out.split("**Where the time goes**")[1].split("**Reproduce:**")[0]
    assert "| kind | `mobilenetv3_large` ms | `gelu` ms | Δ ms | share after |" in section
    rows = [line for line in section.splitlines() if line.startswith("| ") and "kind" not in line]
    assert [r.split(" | ")[0][2:] for r in rows] == [
        "stem", "token mixer", "SE", "channel mixer", "downsampling", "head", "activation",
        "other", "unattributed", "total",
    ]  # fmt: skip
    assert "roadmap profile --upto gelu" in out
    without = run("explain", "gelu", "--backend", "onnxruntime", "--iters", "2", "--markdown")
    assert "not profiled (onnxruntime on cpu): roadmap profile splits torch eager's time" in without


def test_explain_unknown_step_is_one_line():
    result = runner.invoke(app, ["explain", "nonsense"])
    assert result.exit_code == 2 and "unknown step 'nonsense'" in result.output


@pytest.mark.slow
def test_walkthrough_writes_every_lesson_in_order(tmp_path):
    path = tmp_path / "w.md"
    run("walkthrough", "--upto", "expansion_2", "--out", str(path), "--no-latency")
    text = path.read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[0] == "## The whole roadmap"
    assert [h.split("`")[1] for h in headings[1:]] == [
        "mobilenetv3_large",
        "gelu",
        "separate_mixers",
        "expansion_2",
    ]
    assert "| expansion_2 | 3.19 |" in text and "~ expand_ratio" not in text
    assert "! expand_ratio: 6.0 -> 2.0" in text


@pytest.mark.slow
def test_run_trains_the_ablation_set(tmp_path):
    """`roadmap run --leave-one-out` trains the same set `ablate` compares (tiny budget)."""
    args = [
        "run",
        "--leave-one-out",
        "--upto",
        "separate_mixers",
        "--data",
        "synthetic:16",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--img-size",
        "32",
        "--quiet",
        "--out",
        str(tmp_path),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    names = sorted(p.parents[1].name for p in tmp_path.glob("*/*/*/seed0/metrics.json"))
    # leaving separate_mixers out of this prefix *is* the gelu prefix, and is stored as such
    assert names == ["gelu", "separate_mixers", "separate_mixers-gelu"]


def test_run_ablation_flags_are_checked():
    result = runner.invoke(app, ["run", "--leave-one-out", "--only-one"])
    assert result.exit_code == 2 and "choose one of" in result.output


def test_walkthrough_pages_next_previous_quit(monkeypatch):
    """On a terminal the lessons page: n goes forward, p back, q stops."""
    from roadmap.cli import study as cli

    shown, answers = [], iter(["n", "p", "n", "n", "q"])
    monkeypatch.setattr(cli.sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(cli.console, "clear", lambda: None)
    monkeypatch.setattr(cli.console, "print", lambda page, *a, **k: shown.append(page.markup))
    monkeypatch.setattr(cli.console, "input", lambda prompt: next(answers))
    cli._page_lessons(["page 0", "page 1", "page 2", "page 3"])
    assert shown == ["page 0", "page 1", "page 0", "page 1", "page 2"]


@pytest.mark.slow
def test_the_committed_study_agrees_with_the_paper_as_the_readme_says():
    """The README's accuracy agreement for the Fashion-MNIST study, from its committed records."""
    from tests.helpers import REPO

    args = ["table", "--data", "fashion_mnist", "--recipe", "fashion", "--no-latency"]
    result = runner.invoke(app, [*args, "--results", str(REPO / "results"), "--format", "json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["paper_agreement"] is None  # latency not measured
    got = out["paper_accuracy_agreement"]
    assert (got["same_sign"], got["counted"], got["within_noise"], got["steps"]) == (1, 2, 4, 9)
    assert round(got["rho"], 2) == 0.85 and got["what"] == "top-1"
