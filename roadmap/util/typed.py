"""Type checking of plain data read from YAML/JSON files (specs and recipes share it).

YAML is forgiving in ways that hurt: ``use_se: "no"`` is a string (a truthy one), ``48`` and
``"48"`` differ, and ``nan`` is a float. :func:`checked` takes a value and the dataclass field's
annotation (as written in the source, e.g. ``"int | None"``) and returns the value as that
type, or raises a one-line :class:`RoadmapError` that names where the value was found.

Conversions are strict: a bool is not a number, a number is not a bool, floats must be finite,
and an ``int`` given for a ``float`` field becomes a float (so ``2`` and ``2.0`` hash alike).
"""

from __future__ import annotations

import math
from typing import Any

from roadmap.errors import RoadmapError

_WORDS = {
    "int": "a whole number",
    "float": "a finite number",
    "bool": "true or false",
    "str": "a string",
    "tuple[float, float]": "a list of two numbers",
    "list[str]": "a list of strings",
    "dict[str, Any]": "a mapping",
}


def checked(value: Any, annotation: str, where: str) -> Any:
    """``value`` as the type ``annotation`` names, or a RoadmapError naming ``where``.

    Args:
        value: the loaded value.
        annotation: the field's annotation string: ``int``, ``float``, ``bool``, ``str``,
            ``tuple[float, float]``, ``list[str]``, ``dict[str, Any]``, each optionally
            ``| None``.
        where: what to call the value in an error (``spec.stages.0.blocks.1.use_se``).
    """
    optional = annotation.endswith("| None")
    kind = annotation.removesuffix("| None").strip()
    if kind not in _WORDS:
        raise TypeError(f"fields.checked does not know the type {annotation!r}")
    if value is None:
        if optional:
            return None
        raise RoadmapError(f"{where}: needs a value ({_WORDS[kind]}), got nothing")
    converted = _convert(value, kind)
    if converted is None:
        raise RoadmapError(f"{where}: must be {_WORDS[kind]}, got {value!r}")
    return converted


def _convert(value: Any, kind: str) -> Any:
    """The value as ``kind``, or None when it cannot be one."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "int":
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if kind == "float":
        return float(value) if is_number and math.isfinite(value) else None
    if kind == "bool":
        return value if isinstance(value, bool) else None
    if kind == "str":
        return value if isinstance(value, str) else None
    if kind == "list[str]" and isinstance(value, list):
        return value if all(isinstance(item, str) for item in value) else None
    if kind == "dict[str, Any]":
        return value if isinstance(value, dict) else None
    if kind == "tuple[float, float]" and isinstance(value, list | tuple) and len(value) == 2:
        pair = [_convert(item, "float") for item in value]
        return None if None in pair else (pair[0], pair[1])
    return None
