"""What several test modules share: networks with realistic BatchNorm statistics, layers in
execution order, run records as `roadmap train` writes them, and a tiny image dataset.

Tests import these from here and never from each other.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import roadmap
from roadmap.interop.pretrained import LAYERS as _LAYERS
from roadmap.interop.reference import calibrate as calibrate_bn  # noqa: F401 (tests use it)
from roadmap.interop.reference import layer_signature as signature  # noqa: F401
from roadmap.measure.conditions import Conditions
from roadmap.measure.host import Contention
from roadmap.results import store
from roadmap.results.record import Environment, LrRule, RunRecord

REPO = Path(__file__).resolve().parents[1]  # the checkout's root


def representative(values: list, keep: tuple[int, ...] = (0, -1)) -> list:
    """Parametrize over ``values`` with only those at ``keep`` (the ends) in the fast tier: the
    others are marked slow, so the full suite still runs every one."""
    kept = {i % len(values) for i in keep}
    return [
        v if i in kept else pytest.param(*(v if isinstance(v, tuple) else (v,)), marks=SLOW)
        for i, v in enumerate(values)
    ]


SLOW = pytest.mark.slow


def fails_in_one_line(args: list, message: str) -> str:
    """Run the CLI; it must fail with exit code 2 and one line holding ``message``."""
    from typer.testing import CliRunner

    from roadmap.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert message in result.output, result.output
    return result.output


# --- networks -------------------------------------------------------------------------------


def executed_layers(model: nn.Module, img_size: int = 64) -> list[nn.Module]:
    """Conv/Linear/BatchNorm modules in the order a forward pass runs them."""
    order: list[nn.Module] = []
    hooks = [
        m.register_forward_hook(lambda mod, _i, _o: order.append(mod))
        for m in model.modules()
        if isinstance(m, _LAYERS)
    ]
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, img_size, img_size))
    for h in hooks:
        h.remove()
    return order


# --- run records ----------------------------------------------------------------------------

ENVIRONMENT = Environment("3.11", "2.14", "1.0", "linux", "cpu", 1, 2, 0, None, False, False)
LR = LrRule("base_lr x global_batch / 512", 1e-3, 64, 64, 1, 1.25e-4)


def make_record(steps: list[str], seed: int, top1: float, **fields: object) -> RunRecord:
    """A finished run of the network ``steps`` (10 classes, digits/quick unless overridden)."""
    num_classes = int(fields.pop("num_classes", 10))
    spec = roadmap.build_spec(steps=steps, num_classes=num_classes, roadmap="repvit")
    values = dict(
        data="digits",
        synthetic=False,
        recipe="quick",
        name=roadmap.Selection(tuple(steps), "repvit").name,
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


def store_record(root: Path, record: RunRecord) -> Path:
    """Write a record where the store keeps it; returns its run folder."""
    key = store.RunKey(record.data, record.recipe, record.name, record.seed)
    folder = key.folder(root)
    store.write_record(folder, record)
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


def fake_record(root, steps, seed, top1, spec_hash=None):
    """A finished run in the store, as `roadmap train` writes it."""
    extra = {"spec_hash": spec_hash} if spec_hash else {}
    store_record(root, make_record(list(steps), seed, top1, **extra))


# --- a tiny image dataset -------------------------------------------------------------------

CLASSES = ("dark", "light")  # told apart by brightness: learnable in a handful of steps


def make_image_folder(root: Path, per_class: int = 8, val_per_class: int = 4) -> Path:
    """Write ``root/train/<class>/*.png`` and ``root/val/<class>/*.png`` (32x32 RGB)."""
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("val", val_per_class)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                base = 60 + 130 * label  # dark ~60, light ~190
                pixels = rng.normal(base, 25, size=(32, 32, 3)).clip(0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def corrupt_one_image(root: Path) -> Path:
    """Overwrite one training image with bytes that are not an image; returns its path."""
    path = root / "train" / CLASSES[0] / "0.png"
    path.write_bytes(b"this is not a png")
    return path


@contextlib.contextmanager
def isolated_registries() -> Iterator[None]:
    """Every registry is put back as it was afterwards, and the modules of the plugins loaded
    meanwhile are forgotten (so loading one again registers it again)."""
    from roadmap.arch import blocks, registry
    from roadmap.util import registry as registries

    registry.load_everything()
    blocks.KINDS.values()  # define every declared kind now, so that restoring keeps them
    saved, before = registries.snapshot(), set(sys.modules)
    plugins_before = set(registry.PLUGINS.names())
    try:
        yield
    finally:
        plugins = set(registry.PLUGINS.names()) - plugins_before
        registries.restore(saved)
        for name in set(sys.modules) - before:
            root = name.split(".")[0]
            if root in plugins or root.startswith(registry.PLUGIN_PREFIX):
                del sys.modules[name]
