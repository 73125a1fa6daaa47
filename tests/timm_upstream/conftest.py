"""timm's own model tests (``test_models.py`` beside this file, timm 1.0.31's, unmodified) run on
the ``roadmap_*`` models, the way timm tests its own: forward, backward, default configs, the
features_only wrappers (``feature_cls="getter"``, as timm's ViTs serve them), TorchScript and
FX.

The full suite runs them on the two ends of each built-in roadmap, which between them hold
every block kind; ``ROADMAP_TIMM_MODELS=all`` runs every registered ``roadmap_*`` model
(``benchmarks/timm_upstream.sh``; about ten minutes on two cores, too long for the suite). They
skip where another timm is installed: the file is that version's.
"""

import os

import pytest
import timm

import roadmap

VERSION = "1.0.31"
ENDS = (
    "mobilenetv3_large", "alternating_se", "convnext_resnet50", "convnext_separate_downsampling",
)  # fmt: skip
HERE = os.path.dirname(__file__)

roadmap.register_timm_models()  # before test_models.py is imported: it lists the models then


def pytest_configure(config: pytest.Config) -> None:
    for name in ("base", "cfg", "cfg_nonstd", "features", "torchscript", "fxforward",
                 "fxbackward", "timeout", "forward", "backward"):  # fmt: skip
        config.addinivalue_line("markers", f"{name}: timm's own test marker")


def _model(item: pytest.Item) -> str | None:
    spec = getattr(item, "callspec", None)
    return spec.params.get("model_name") if spec else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    everything = os.environ.get("ROADMAP_TIMM_MODELS") == "all"
    wanted = None if everything else {f"roadmap_{name}" for name in ENDS}
    keep, drop = [], []
    for item in items:
        if not str(item.fspath).startswith(HERE):
            keep.append(item)
            continue
        name = _model(item) or ""
        if name.startswith("roadmap_") and (wanted is None or name in wanted):
            item.add_marker(pytest.mark.slow)
            if timm.__version__ != VERSION:
                why = f"timm {VERSION}'s tests; timm {timm.__version__} is installed"
                item.add_marker(pytest.mark.skip(reason=why))
            keep.append(item)
        else:
            drop.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
