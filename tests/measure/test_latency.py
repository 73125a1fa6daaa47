"""Latency: record structure, conditions, interleaving, noise marking, CLI. No timing asserted."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from rich.console import Console
from torch import nn
from typer.testing import CliRunner

import roadmap
from roadmap.arch.reparam import unfused_norms
from roadmap.arch.selection import Selection
from roadmap.cli import app
from roadmap.errors import RoadmapError
from roadmap.measure import latency
from roadmap.measure.conditions import Conditions
from roadmap.measure.host import Contention
from roadmap.measure.latency import Candidate, LatencyRecord, LatencySettings
from roadmap.report import tables
from roadmap.study.plan import every_step
from tests.helpers import representative

# Tiny settings: these tests check what is recorded, never how fast anything is.
TINY = LatencySettings(img_size=32, warmup=1, iters=3, threads=1)
REQUIRED_CONDITIONS = {
    "device",
    "device_name",
    "threads",
    "batch",
    "img_size",
    "dtype",
    "memory_format",
    "backend",
    "torch_version",
    "warmup",
    "iters",
}


pytestmark = pytest.mark.usefixtures("one_thread")


def synthetic(
    label: str, p25: float, median: float, p75: float, conditions: Conditions | None = None
) -> LatencyRecord:
    return LatencyRecord(label, [label], True, median, p25, p75, p75 - p25, p25, 5, conditions, [])


# --- statistics and noise marking (synthetic numbers) ------------------------------------


def test_summarize_quartiles() -> None:
    assert latency.summarize([5.0, 1.0, 4.0, 2.0, 3.0]) == (2.0, 3.0, 4.0)
    assert latency.summarize([7.0]) == (7.0, 7.0, 7.0)


def test_a_difference_below_the_pooled_iqr_is_noise() -> None:
    c = latency.compare(synthetic("a", 9.0, 10.0, 11.0), synthetic("b", 10.5, 10.8, 12.0))
    assert c.noise
    assert c.delta_ms == pytest.approx(0.8)
    assert c.ratio == pytest.approx(1.08)


def test_a_difference_above_the_pooled_iqr_is_real() -> None:
    c = latency.compare(synthetic("a", 9.0, 10.0, 11.0), synthetic("b", 6.0, 7.0, 8.5))
    assert not c.noise
    assert (c.a, c.b) == ("a", "b")
    assert c.delta_ms == pytest.approx(-3.0)


def test_a_small_difference_between_tight_measurements_is_not_noise() -> None:
    c = latency.compare(synthetic("a", 9.99, 10.0, 10.01), synthetic("b", 10.19, 10.2, 10.21))
    assert not c.noise


def test_the_rule_is_the_pooled_iqr_not_overlapping_ranges() -> None:
    """[9, 14] and [13.5, 16] overlap, but 5 ms is more than the pooled IQR of 3.75 ms."""
    assert not latency.compare(synthetic("a", 9.0, 10.0, 14.0), synthetic("b", 13.5, 15, 16)).noise
    at_the_edge = latency.compare(synthetic("a", 9.0, 10.0, 11.0), synthetic("b", 11, 12, 13))
    assert not at_the_edge.noise  # strictly below the pooled IQR is noise; equal is not


def test_consecutive_compares_each_row_with_the_one_before() -> None:
    records = [synthetic(n, m - 1, m, m + 1) for n, m in [("a", 10), ("b", 20), ("c", 20.5)]]
    comparisons = latency.consecutive(records)
    assert [(c.a, c.b, c.noise) for c in comparisons] == [("a", "b", False), ("b", "c", True)]


def test_noisy_flags_a_wide_spread() -> None:
    assert synthetic("wide", 9.0, 10.0, 11.5).noisy
    assert not synthetic("tight", 9.8, 10.0, 10.3).noisy


def render(records: list[LatencyRecord]) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(tables.latency_table(records))
    return console.export_text()


def test_table_marks_noise_and_spread() -> None:
    (real,) = latency.measure([Candidate("x", nn.Identity())], TINY)
    rows = [("a", 9.9, 10.0, 10.1), ("b", 14.9, 15.0, 15.1), ("c", 13.0, 15.2, 17.0)]
    text = render([synthetic(*row, conditions=real.conditions) for row in rows])
    lines = {line.split("│")[2].strip(): line for line in text.splitlines() if "│" in line}
    assert tables.NOISE_MARK not in lines["b"] and "+5.00" in lines["b"]
    assert f"{tables.NOISE_MARK}+0.20" in lines["c"] and "!" in lines["c"]  # noise, wide spread


@pytest.mark.parametrize(
    ("others", "load", "busy"),
    [
        (0.8, 0.1, True),  # measured beats the load average
        (0.05, 3.0, False),
        (None, 3.0, True),  # no /proc/stat: the load average decides
        (None, 0.2, False),
    ],
)
def test_caption_warns_about_a_busy_machine(others: float | None, load: float, busy: bool) -> None:
    (real,) = latency.measure([Candidate("x", nn.Identity())], TINY)
    contention = Contention(others, 0.0, load, load, 2)
    conditions = dataclasses.replace(real.conditions, contention=contention)
    caption = " ".join(render([synthetic("a", 1, 2, 3, conditions)]).split())  # unwrapped
    assert ("busy machine" in caption) is busy
    assert conditions.busy is busy


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="contention is read from /proc/stat")
def test_contention_while_timing_is_recorded() -> None:
    (record,) = latency.measure([Candidate("x", nn.Identity())], TINY)
    assert record.conditions.contention.other_cpu_cores >= 0.0
    assert record.conditions.contention.steal_cpu_cores >= 0.0


# --- measuring ---------------------------------------------------------------------------


class Probe(nn.Module):
    """Logs its label on every forward pass."""

    def __init__(self, label: str, log: list[str]):
        super().__init__()
        self.label, self.log = label, log

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append(self.label)
        return x.mean()


def test_models_are_warmed_up_then_interleaved_round_by_round() -> None:
    log: list[str] = []
    candidates = [Candidate(label, Probe(label, log)) for label in "abc"]
    records = latency.measure(candidates, LatencySettings(img_size=8, warmup=2, iters=6))
    assert log[:6] == ["a", "a", "b", "b", "c", "c"]
    rounds = [tuple(log[i : i + 3]) for i in range(6, len(log), 3)]
    assert len(rounds) == 6 and all(sorted(r) == ["a", "b", "c"] for r in rounds)
    assert len(set(rounds)) > 1  # the order is reshuffled, so no model always follows another
    assert [r.n for r in records] == [6, 6, 6]


def test_record_structure_and_conditions() -> None:
    (record,) = latency.measure([Candidate("conv", nn.Conv2d(3, 4, 3))], TINY)
    assert record.step == "conv" and record.fused and record.n == TINY.iters
    assert len(record.samples_ms) == record.n
    assert record.min_ms <= record.p25_ms <= record.median_ms <= record.p75_ms
    assert record.iqr_ms == pytest.approx(record.p75_ms - record.p25_ms)
    c = record.to_dict()["conditions"]
    assert REQUIRED_CONDITIONS <= c.keys()
    assert (c["device"], c["threads"], c["batch"], c["img_size"]) == ("cpu", 1, 1, 32)
    assert (c["dtype"], c["memory_format"], c["backend"]) == ("float32", "contiguous", "eager")
    assert c["torch_version"] == torch.__version__
    json.dumps(record.to_dict())  # plain data all the way down


def test_threads_are_set_for_the_measurement_and_restored() -> None:
    torch.set_num_threads(1)
    settings = LatencySettings(img_size=8, warmup=0, iters=1, threads=2)
    (record,) = latency.measure([Candidate("id", nn.Identity())], settings)
    assert record.conditions.threads == 2
    assert torch.get_num_threads() == 1


def test_labels_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        latency.measure([Candidate("x", nn.Identity()), Candidate("x", nn.Identity())], TINY)


@pytest.mark.parametrize(
    "settings",
    [
        LatencySettings(backend="onnxruntime", channels_last=True),
        LatencySettings(backend="tensorrt"),
        LatencySettings(iters=0),
        LatencySettings(backend="compile", warmup=0),
        LatencySettings(backend="executorch", channels_last=True),
        LatencySettings(backend="executorch", device="cuda"),
    ],
    ids=[
        "onnxruntime-channels-last",
        "unknown-backend",
        "no-iterations",
        "compile-unwarmed",
        "executorch-channels-last",
        "executorch-on-cuda",
    ],
)
def test_settings_that_cannot_be_measured_raise(settings: LatencySettings) -> None:
    with pytest.raises(RoadmapError):
        settings.check()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error() -> None:
    with pytest.raises(RoadmapError, match="no CUDA device"):
        LatencySettings(device="cuda").check()


@pytest.mark.parametrize(
    ("backend", "channels_last"),
    representative([("eager", True), ("torchscript", False), ("onnxruntime", False)]),
)
def test_backends_measure_a_step(backend: str, channels_last: bool) -> None:
    settings = LatencySettings(
        img_size=32, warmup=1, iters=2, threads=1, backend=backend, channels_last=channels_last
    )
    (record,) = latency.measure_selections([Selection.of("repvit", "gelu")], settings)
    assert record.step == "gelu" and record.n == 2
    c = record.conditions
    assert c.backend == backend
    assert c.memory_format == ("channels_last" if channels_last else "contiguous")
    assert (c.onnxruntime_version is not None) == (backend == "onnxruntime")
    assert c.onnxruntime_workers_spin is (False if backend == "onnxruntime" else None)


def test_onnxruntime_sessions_do_not_spin(monkeypatch) -> None:  # noqa: ANN001
    """Interleaved sessions whose idle workers spin steal each other's cores (measured: 2-3x
    slower, IQRs of 6-10 ms): every session is made with spinning off."""
    import onnxruntime as ort

    made: list[ort.SessionOptions] = []
    real = ort.InferenceSession

    def spy(model, options, **kwargs):  # noqa: ANN001, ANN202
        made.append(options)
        return real(model, options, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    settings = dataclasses.replace(TINY, backend="onnxruntime", iters=1)
    latency.measure_selections(
        [Selection.of("repvit", "gelu"), Selection.of("repvit", "widen")], settings
    )
    assert len(made) == 2
    assert all(o.get_session_config_entry("session.intra_op.allow_spinning") == "0" for o in made)


@pytest.mark.slow
@pytest.mark.heavy
def test_cli_executorch_backend_records_its_runtime() -> None:
    """ExecuTorch (XNNPACK) times the lowered program; the record names the runtime, its
    version, the delegate and the threads, and the runtime's own load-time chatter on stderr
    (cpuinfo probes, thread-pool size) does not reach the user."""
    pytest.importorskip("executorch", reason='ExecuTorch is not installed (".[mobile]")')
    args = ["latency", "--size", "w0.25d0.25", "--backend", "executorch", "--threads", "1"]
    result = runner.invoke(app, [*args, "--img-size", "32", "--iters", "2", "--format", "json"])
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)["records"]
    c = record["conditions"]
    assert (c["backend"], c["delegate"], c["threads"]) == ("executorch", "XNNPACK", 1)
    assert c["executorch_version"] and c["onnxruntime_version"] is None
    assert "cpp:" not in result.stderr, result.stderr


def test_the_compile_backend_times_the_compiled_model(monkeypatch) -> None:  # noqa: ANN001
    compiled: list[nn.Module] = []
    calls: list[int] = []

    def fake_compile(model: nn.Module) -> object:  # stands in for inductor: counts the calls
        compiled.append(model)
        return lambda x: calls.append(1) or model(x)

    monkeypatch.setattr(torch, "compile", fake_compile)
    settings = LatencySettings(img_size=32, warmup=2, iters=3, threads=1, backend="compile")
    (record,) = latency.measure([Candidate("id", nn.Identity())], settings)
    assert len(compiled) == 1 and len(calls) == 2 + 3  # warm-up and timed calls go through it
    assert record.conditions.backend == "compile"


@pytest.mark.parametrize("fused", [True, False])
def test_steps_are_measured_fused_unless_asked(fused: bool, monkeypatch) -> None:  # noqa: ANN001
    seen: list[Candidate] = []
    monkeypatch.setattr(latency, "measure", lambda candidates, settings: seen.extend(candidates))
    latency.measure_selections([Selection.of("repvit", "gelu")], TINY, fused=fused)
    (candidate,) = seen
    assert candidate.fused is fused
    assert (unfused_norms(candidate.model) == []) is fused


def test_records_are_labelled_with_the_networks_one_name(monkeypatch) -> None:  # noqa: ANN001
    seen: list[Candidate] = []
    monkeypatch.setattr(latency, "measure", lambda candidates, settings: seen.extend(candidates))
    control = Selection.of("repvit", steps=["mobilenetv3_large", "gelu", "expansion_2", "widen"])
    latency.measure_selections([Selection.of("repvit", "widen"), control], TINY)
    assert [c.label for c in seen] == ["widen", "widen-separate_mixers"]


def test_every_step_is_one_prefix_per_step() -> None:
    selections = [s.steps for s in every_step("repvit")]
    assert [s[-1] for s in selections] == roadmap.list_steps("repvit")
    assert all(a == b[: len(a)] for a, b in zip(selections, selections[1:], strict=False))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_measurement_records_the_gpu() -> None:
    settings = LatencySettings(device="cuda", img_size=32, warmup=1, iters=2)
    (record,) = latency.measure_selections([Selection.of("repvit", "gelu")], settings)
    assert record.conditions.device_name == torch.cuda.get_device_name()
    assert "synchronized" in record.conditions.timer


# --- CLI ---------------------------------------------------------------------------------

runner = CliRunner()
FAST = ["--iters", "2", "--warmup", "1", "--img-size", "32", "--threads", "1"]


@pytest.mark.parametrize("unfused", [False, True])
def test_cli_json_carries_records_and_conditions(unfused: bool) -> None:
    args = ["latency", "--upto", "gelu", *FAST, "--format", "json"]
    result = runner.invoke(app, args + (["--unfused"] if unfused else []))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    (record,) = data["records"]
    assert (record["step"], record["n"], record["fused"]) == ("gelu", 2, not unfused)
    assert record["conditions"]["img_size"] == 32 and record["conditions"]["threads"] == 1
    assert data["comparisons"] == []


@pytest.mark.parametrize(
    "args",
    [
        ["--all", "--upto", "gelu"],
        ["--upto", "no_such_step"],
        ["--backend", "onnxruntime", "--channels-last"],
    ],
    ids=["all-with-upto", "unknown-step", "ort-channels-last"],
)
def test_cli_bad_input_is_one_line_and_exit_2(args: list[str]) -> None:
    result = runner.invoke(app, ["latency", *args, *FAST])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error:") and len(result.output.splitlines()) == 1


@pytest.mark.parametrize(
    "args", [["--backend", "tensorrt"], ["--batch", "0"], ["--device", "tpu"]], ids=str
)
def test_cli_bad_option_values_exit_2(args: list[str]) -> None:
    result = runner.invoke(app, ["latency", *args])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_cli_all_prints_every_step_with_median_and_iqr() -> None:
    result = runner.invoke(app, ["latency", "--all", *FAST])
    assert result.exit_code == 0, result.output
    for step in roadmap.list_steps("repvit"):
        assert f" {step} " in result.stdout
    assert "IQR" in result.stdout and "2 timed iterations per model" in result.stdout
    assert "Agreement with" in result.stdout  # the paper times 10 of the 11 steps
