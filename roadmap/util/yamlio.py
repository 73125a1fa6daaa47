"""YAML read as people write it.

PyYAML follows YAML 1.1, in which a number in exponent form without a dot (``1e-3``,
``1e-06``: what Python's ``json`` writes) is a string, so ``--set base_lr=1e-3`` or a JSON spec
with ``"layer_scale": 1e-06`` would be refused as "not a number". YAML 1.2 (and JSON, which
it contains) reads those as floats; :func:`load` does too, by adding YAML 1.2's float pattern to
PyYAML's safe loader (no other tag, so no code runs from a file).
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's floats."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load(text: str) -> Any:
    """Parse YAML (or JSON) text safely, exponent-form numbers as floats."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
