"""Module paths of 0.2, before the package was split into sub-packages, kept importable.

``roadmap`` was one flat folder of modules until 0.3; plugins and scripts written then import
``roadmap.spec``, ``roadmap.edit``, ``roadmap.registry`` or run ``python -m roadmap.timm_run``.
Each old path is an alias of the module's new home (the same module object, so a class
imported either way is the same class), with a ``DeprecationWarning`` that names the new path.
:data:`MOVED` is the one table of what moved where.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import CodeType, ModuleType

MOVED = {
    "roadmap.files": "roadmap.util.files",
    "roadmap.fields": "roadmap.util.typed",
    "roadmap.quiet": "roadmap.util.stderr_filter",
    "roadmap.spec": "roadmap.arch.spec",
    "roadmap.edit": "roadmap.arch.edit",
    "roadmap.registry": "roadmap.arch.registry",
    "roadmap.layers": "roadmap.arch.layers",
    "roadmap.builder": "roadmap.arch.builder",
    "roadmap.reparam": "roadmap.arch.reparam",
    "roadmap.family": "roadmap.arch.family",
    "roadmap.selection": "roadmap.arch.selection",
    "roadmap.diagram": "roadmap.teach.diagram",
    "roadmap.pretrained": "roadmap.interop.pretrained",
    "roadmap.timm_models": "roadmap.interop.timm_models",
    "roadmap.timm_run": "roadmap.interop.timm_run",
    "roadmap.machine": "roadmap.measure.host",
    "roadmap.latency": "roadmap.measure.latency",
    "roadmap.profile": "roadmap.measure.profile",
    "roadmap.export": "roadmap.measure.export",
    "roadmap.record": "roadmap.results.record",
    "roadmap.wiring": "roadmap.train.setup",
    "roadmap.options": "roadmap.train.run_options",
    "roadmap.data": "roadmap.train.data",
    "roadmap.recipe": "roadmap.train.recipe",
    "roadmap.checkpoint": "roadmap.train.checkpoint",
    "roadmap.evaluate": "roadmap.train.evaluate",
    "roadmap.distributed": "roadmap.train.distributed",
    "roadmap.interrupt": "roadmap.train.interrupt",
    "roadmap.progress": "roadmap.train.progress",
    "roadmap.stats": "roadmap.study.stats",
    "roadmap.sweep": "roadmap.study.sweep",
    "roadmap.cluster": "roadmap.study.cluster",
    "roadmap.training_report": "roadmap.report.training",
    "roadmap.profile_report": "roadmap.report.profile_table",
    "roadmap.plot": "roadmap.report.plot",
    "roadmap.page": "roadmap.teach.html_page",
}
# Old modules whose name is now a sub-package (roadmap.measure, roadmap.results, roadmap.train,
# roadmap.study, roadmap.report, roadmap.teach) cannot be aliased: the package owns the name.
# Their contents are in roadmap.measure.counts, roadmap.results.store, roadmap.train.loop,
# roadmap.study.comparison, roadmap.report.tables and roadmap.teach.lesson.


class _AliasLoader(importlib.abc.Loader):
    """Loads an old path as the module at its new path (imported once, shared)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(
            f"{spec.name} moved to {self.target} in roadmap 0.3; import it from there",
            DeprecationWarning,
            stacklevel=2,
        )
        module = importlib.import_module(self.target)
        self.own_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # the import system set the alias's spec on the shared module: give it its own back
        module.__spec__ = self.own_spec

    def get_code(self, fullname: str) -> CodeType | None:
        """The new module's code, so that ``python -m OLD.PATH`` runs it as ``__main__``."""
        spec = importlib.util.find_spec(self.target)
        return spec.loader.get_code(self.target)  # type: ignore[union-attr]


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object = None, target: object = None):  # noqa: ANN201
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(MOVED[fullname]))


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder())
