"""timm's own model tests (``test_models.py`` beside this file, timm 1.0.31's, unmodified) run on
the ``roadmap_*`` models, the way timm tests its own: forward, backward, default configs, the
features_only wrappers (``feature_cls="getter"``, as timm's ViTs serve them), TorchScript and
FX.

The full suite runs them on the last step of each built-in roadmap (RepViT-M0.9, ConvNeXt-T and
Visformer-S: every block kind but the starting networks', which are timm's own MobileNetV3,
ResNet and ViT layer for layer). ``ROADMAP_TIMM_MODELS=all`` runs every registered
``roadmap_*`` model (``benchmarks/timm_upstream.sh``: 272 cases in 153 s on two cores before
Visformer's roadmap, too long for the suite); two of its cases fail, by design, on Visformer's
first step, DeiT-S, whose features are tokens: the unpooled-shape check against ``pool_size``
and "at least 3 feature levels", which timm itself does not apply to its ViTs (it picks those
out by name, ``vit_*``, ``deit_*``, for its non-standard tests; ours are named ``roadmap_*``).
They skip where another timm is installed: the file is that version's. The file lists the
models to test when it is imported, over every timm model; the list is narrowed here to ours
while it is collected (collecting 18,000 cases to deselect them cost seconds per process).
"""

import os

import pytest
import timm

import roadmap

VERSION = "1.0.31"
ENDS = ("alternating_se", "convnext_separate_downsampling", "visformer_visformer_s")
HERE = os.path.dirname(__file__)
EVERYTHING = os.environ.get("ROADMAP_TIMM_MODELS") == "all"
WANTED = None if EVERYTHING else {f"roadmap_{name}" for name in ENDS}

roadmap.register_timm_models()  # before test_models.py is imported: it lists the models then
_list_models = timm.list_models


def _ours(*args: object, **kwargs: object) -> list[str]:
    """timm's list, narrowed to the roadmap's models while test_models.py is collected."""
    found = _list_models(*args, **kwargs)
    return [n for n in found if n.startswith("roadmap_") and (WANTED is None or n in WANTED)]


timm.list_models = _ours


def pytest_collection_finish(session: pytest.Session) -> None:
    timm.list_models = _list_models  # the rest of the suite asks timm itself


def pytest_configure(config: pytest.Config) -> None:
    for name in ("base", "cfg", "cfg_nonstd", "features", "torchscript", "fxforward",
                 "fxbackward", "timeout", "forward", "backward"):  # fmt: skip
        config.addinivalue_line("markers", f"{name}: timm's own test marker")


def _model(item: pytest.Item) -> str | None:
    spec = getattr(item, "callspec", None)
    return spec.params.get("model_name") if spec else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = WANTED
    keep, drop = [], []
    for item in items:
        if not str(item.fspath).startswith(HERE):
            keep.append(item)
            continue
        name = _model(item)
        name = name if isinstance(name, str) else ""  # an empty parametrization: NOTSET
        if name.startswith("roadmap_") and (wanted is None or name in wanted):
            item.add_marker(pytest.mark.slow)
            # deprecated in torch 2.14, still timm's API (and its tests')
            item.add_marker(pytest.mark.filterwarnings("ignore:`torch.jit"))
            if timm.__version__ != VERSION:
                why = f"timm {VERSION}'s tests; timm {timm.__version__} is installed"
                item.add_marker(pytest.mark.skip(reason=why))
            keep.append(item)
        else:
            drop.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
