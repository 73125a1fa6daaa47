"""What changed between two specs: field-level differences (:func:`diff`), and the same change
made in many blocks merged into one line (:func:`group_changes`), as ``roadmap build`` and the
lessons print them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from roadmap.arch.spec import NetSpec


@dataclass(frozen=True)
class Change:
    """One difference between two specs.

    Attributes:
        path: spec path, e.g. ``stages.2.blocks.3.kernel_size`` or ``stages.2.blocks.9``.
        kind: "changed", "added" or "removed".
        before: old value (None when added).
        after: new value (None when removed).
    """

    path: str
    kind: str
    before: Any = None
    after: Any = None

    def __str__(self) -> str:
        if self.kind == "added":
            return f"+ {self.path}: {_short(self.after)}"
        if self.kind == "removed":
            return f"- {self.path}: {_short(self.before)}"
        return f"~ {self.path}: {_short(self.before)} -> {_short(self.after)}"


def _short(value: Any) -> str:
    if isinstance(value, dict) and "kind" in value:
        keys = ("kind", "out_channels", "kernel_size", "stride", "expand_ratio", "use_se")
        return "{" + ", ".join(f"{k}={value[k]}" for k in keys if k in value) + "}"
    if isinstance(value, dict) and set(value) == {"downsample", "blocks"}:  # a whole stage
        return (
            f"stage: downsample {_blocks(value['downsample'])}, blocks {_blocks(value['blocks'])}"
        )
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _blocks(blocks: list[dict]) -> str:
    """A run of blocks in a few words: ``[patch_embed 384, 12 x transformer 384]``."""
    runs: list[list] = []
    for b in blocks:
        label = f"{b['kind']} {b['out_channels']}"
        if runs and runs[-1][0] == label:
            runs[-1][1] += 1
        else:
            runs.append([label, 1])
    return "[" + ", ".join(label if n == 1 else f"{n} x {label}" for label, n in runs) + "]"


def diff(a: NetSpec, b: NetSpec) -> list[Change]:
    """Field-level differences from ``a`` to ``b``; list items compare by position."""
    changes: list[Change] = []
    _diff(a.to_dict(), b.to_dict(), "", changes)
    return changes


def _diff(a: Any, b: Any, path: str, out: list[Change]) -> None:
    join = (lambda k: f"{path}.{k}") if path else str
    if isinstance(a, dict) and isinstance(b, dict):
        for key in a:
            if key in b:
                _diff(a[key], b[key], join(key), out)
            else:
                out.append(Change(join(key), "removed", before=a[key]))
        out.extend(Change(join(k), "added", after=b[k]) for k in b if k not in a)
    elif isinstance(a, list) and isinstance(b, list):
        for i in range(max(len(a), len(b))):
            if i >= len(b):
                out.append(Change(join(i), "removed", before=a[i]))
            elif i >= len(a):
                out.append(Change(join(i), "added", after=b[i]))
            else:
                _diff(a[i], b[i], join(i), out)
    elif a != b:
        out.append(Change(path, "changed", before=a, after=b))


@dataclass(frozen=True)
class ChangeGroup:
    """The same change made in several places (e.g. one field changed in 13 blocks).

    Attributes:
        kind: "changed", "added" or "removed".
        field: the field path inside the block (``se.gate``), or "" for a whole block.
        before: old value (changed/removed).
        after: new value (changed/added).
        where: the block paths (``stages.2.blocks.3``, ``head``) it happened in, in order.
    """

    kind: str
    field: str
    before: Any
    after: Any
    where: tuple[str, ...]

    def __str__(self) -> str:
        places = ", ".join(self.where[:3]) + (", ..." if len(self.where) > 3 else "")
        n = len(self.where)
        where = f"{places}" if n == 1 else f"{n} places: {places}"
        if self.kind == "changed":
            return f"~ {self.field}: {_short(self.before)} -> {_short(self.after)}  [{where}]"
        sign, value = ("+", self.after) if self.kind == "added" else ("-", self.before)
        label = f"{self.field} " if self.field else ""
        return f"{sign} {label}{_short(value)}  [{where}]"


def group_changes(changes: list[Change]) -> list[ChangeGroup]:
    """Merge identical changes made at different block paths, keeping first-seen order."""
    groups: dict[tuple, list[str]] = {}
    values: dict[tuple, tuple[Any, Any]] = {}
    for c in changes:
        where, field_path = split_block_path(c.path)
        key = (
            c.kind,
            field_path,
            json.dumps(c.before, sort_keys=True),
            json.dumps(c.after, sort_keys=True),
        )
        groups.setdefault(key, []).append(where)
        values[key] = (c.before, c.after)
    return [
        ChangeGroup(key[0], key[1], *values[key], tuple(where)) for key, where in groups.items()
    ]


def split_block_path(path: str) -> tuple[str, str]:
    """``stages.2.blocks.3.se.gate`` -> (``stages.2.blocks.3``, ``se.gate``); ``head.norm`` ->
    (``head``, ``norm``); a path outside any block (``num_classes``) is its own block."""
    parts = path.split(".")
    n = {"stem": 2, "stages": 4, "head": 1}.get(parts[0], 0)
    return ".".join(parts[:n]) or path, ".".join(parts[n:])
