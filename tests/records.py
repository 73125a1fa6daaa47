"""Run records for tests: complete, as `roadmap train` writes them, with only what matters set."""

from pathlib import Path

import roadmap
from roadmap import results
from roadmap.latency import Conditions
from roadmap.machine import Contention
from roadmap.record import Environment, LrRule, RunRecord

ENVIRONMENT = Environment("3.11", "2.14", "1.0", "linux", "cpu", 1, 2, 0, None, False, False)
LR = LrRule("base_lr x global_batch / 512", 1e-3, 64, 64, 1, 1.25e-4)


def make_record(steps: list[str], seed: int, top1: float, **fields: object) -> RunRecord:
    """A finished run of the network ``steps`` (10 classes, digits/quick unless overridden)."""
    num_classes = int(fields.pop("num_classes", 10))
    spec = roadmap.build_spec(steps=steps, num_classes=num_classes)
    values = dict(
        data="digits",
        synthetic=False,
        recipe="quick",
        name=roadmap.Selection(tuple(steps)).name,
        seed=seed,
        steps=list(steps),
        spec_hash=roadmap.spec_hash(spec),
        recipe_hash="0" * 12,
        num_classes=num_classes,
        top1=top1,
        top5=100.0,
        best_top1=top1,
        best_top5=100.0,
        best_epoch=1,
        fused_top1=top1,
        fused_top5=100.0,
        fused_disagreements=0,
        val_images=360,
        params=1,
        macs=1,
        deploy_params=1,
        deploy_macs=1,
        img_size=32,
        epochs=1,
        train_time_s=1.0,
        images_per_s=1.0,
        skipped_images=0,
        lr=LR,
        environment=ENVIRONMENT,
        command="roadmap train",
        finished_at="2026-11-25T00:00:00+00:00",
    )
    values.update(fields)
    return RunRecord(**values)


def store(root: Path, record: RunRecord) -> Path:
    """Write a record where the store keeps it; returns its run folder."""
    key = results.RunKey(record.data, record.recipe, record.name, record.seed)
    folder = key.folder(root)
    results.write_record(folder, record)
    return folder


def make_conditions(**fields: object) -> Conditions:
    """Latency conditions as `roadmap latency` records them (a quiet 2-CPU machine)."""
    values = dict(
        device="cpu",
        device_name="Intel(R) Xeon(R) CPU @ 2.20GHz",
        threads=2,
        batch=1,
        img_size=224,
        dtype="float32",
        memory_format="contiguous",
        backend="eager",
        torch_version="2.14.1",
        onnxruntime_version=None,
        warmup=5,
        iters=30,
        interleaved_models=11,
        timer="perf_counter per iteration",
        contention=Contention(0.01, 0.0, 0.1, 0.1, 2),
        platform="Linux",
        python_version="3.11.7",
        measured_at="2026-11-25T00:00:00+00:00",
    )
    values.update(fields)
    return Conditions(**values)
