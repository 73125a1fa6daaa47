"""Which network: a selection of steps (optionally applied to a spec file), and its one name.

Everything that names a network uses this module: tables and plots label rows with
:attr:`Selection.name`, the results store files runs under it, latency records carry it, and
checkpoint errors quote it. The grammar of a name is ``LAST(-MINUS)*(+PLUS)*``:

- ``widen``: the paper's roadmap up to and including ``widen``;
- ``alternating_se-kernel_3x3``: that prefix with ``kernel_3x3`` left out (a leave-one-out);
- ``mobilenetv3_large+kernel_3x3``: the baseline with ``kernel_3x3`` alone (an only-one);
- ``widen-separate_mixers``: the paper's control experiment;
- ``alternating_se+relu``: the whole roadmap, then a plugin step;
- ``spec-mynet-1a2b3c4d+kernel_3x3``: a spec file (its name and spec hash), then a step;
- ``alternating_se@m1_5``: any of the above at another size (:mod:`roadmap.arch.family`);
- ``convnext.patchify_stem``: any of the above in a roadmap other than the default, prefixed
  with its name (:mod:`roadmap.arch.roadmaps`), so two roadmaps' networks never share a name.

Of the two exact ways to write a list of paper steps (a prefix minus what is missing, or the
baseline plus what is added), the one with fewer terms is used. Steps are Python identifiers,
so ``-`` and ``+`` never occur inside one, and :meth:`Selection.from_name` reads any name back.

The sets of networks a study compares are planned from selections in
:mod:`roadmap.study.plan`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from roadmap.arch import paper, registry
from roadmap.arch.family import Size, parse_size, scale
from roadmap.arch.paper import PaperResult
from roadmap.arch.roadmaps import Roadmap, get_roadmap, split_name
from roadmap.arch.spec import NetSpec, replace, spec_hash, validate
from roadmap.arch.spec_diff import Change, diff
from roadmap.errors import RoadmapError

SPEC_PREFIX = "spec-"
CUSTOM_PREFIX = "custom-"
MAX_NAME = 200  # folder names stay well inside the usual 255-byte limit


@dataclass(frozen=True)
class Selection:
    """A network: steps applied in order, to the base step's network or to a spec file's.

    Attributes:
        steps: the step names in order; the base step first unless ``start`` is given.
        start: the spec read from a file that the steps apply to, or None.
        start_file: that file's path as the user gave it ("" without one).
        size: the size the result is scaled to (``roadmap.arch.family``), or None.
        roadmap: whose steps (:mod:`roadmap.arch.roadmaps`).
    """

    steps: tuple[str, ...]
    roadmap: Roadmap
    start: NetSpec | None = None
    start_file: str = ""
    size: Size | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.roadmap, Roadmap):  # a name: the roadmap it names
            object.__setattr__(self, "roadmap", get_roadmap(self.roadmap))

    @classmethod
    def of(
        cls,
        roadmap: Roadmap | str,
        upto: str | None = None,
        steps: Sequence[str] | None = None,
        skip: Iterable[str] = (),
        spec_file: str | Path | None = None,
        size: str | None = None,
    ) -> Selection:
        """The selection the ``--roadmap`` / ``--upto`` / ``--steps`` / ``--skip`` / ``--spec``
        / ``--size`` options name."""
        roadmap = get_roadmap(roadmap)
        if size is not None:
            chosen = cls.of(roadmap, upto, steps, skip, spec_file)
            return dataclasses.replace(chosen, size=_size(roadmap, size))
        if spec_file is None:
            resolved = registry.resolve_steps(upto, steps=steps, skip=tuple(skip), roadmap=roadmap)
            return cls(tuple(resolved), roadmap)
        if upto is not None or tuple(skip):
            raise RoadmapError(
                "--spec starts from a spec file: add steps on top with --steps, "
                "not --upto or --skip"
            )
        names = [registry.get_step(n, roadmap).name for n in steps or ()]
        base = [n for n in names if registry.get_step(n, roadmap).base]
        if base:
            raise RoadmapError(f"--spec is the starting network: drop {base[0]} from --steps")
        if len(set(names)) != len(names):
            raise RoadmapError(f"step(s) listed twice: {', '.join(sorted(_dupes(names)))}")
        return cls(tuple(names), roadmap, NetSpec.load(spec_file), str(spec_file))

    @classmethod
    def from_name(cls, name: str) -> Selection:
        """The selection a name stands for (inverse of :attr:`name` for step selections)."""
        if name.startswith((SPEC_PREFIX, CUSTOM_PREFIX)):
            raise RoadmapError(
                f"{name!r} names a spec file or a hashed list; it cannot be read back"
            )
        if "@" in name:
            base, size = name.rsplit("@", 1)
            chosen = cls.from_name(base)
            return dataclasses.replace(chosen, size=_size(chosen.roadmap, size))
        roadmap, bare = split_name(name)
        head, *plus = bare.split("+")
        last, *minus = head.split("-")
        paper = registry.paper_roadmap(roadmap)
        if last not in paper:
            raise RoadmapError(f"{name!r} is not a network name: {last!r} is not a paper step")
        prefix = [s for s in paper[: paper.index(last) + 1] if s not in minus]
        unknown = [m for m in minus if m not in paper[: paper.index(last) + 1]]
        if unknown:
            raise RoadmapError(
                f"{name!r} is not a network name: {unknown[0]!r} is not before {last}"
            )
        steps = registry.resolve_steps(steps=prefix + plus, roadmap=roadmap)
        return cls(tuple(steps), roadmap)

    @property
    def name(self) -> str:
        """The one name of this network (see the module docstring)."""
        if self.start is not None:
            label = re.sub(r"[^A-Za-z0-9_.]", "_", Path(self.start_file).stem) or "file"
            head = f"{SPEC_PREFIX}{label}-{spec_hash(self.start)[:8]}"
            name = head + "".join(f"+{s}" for s in self.steps)
        else:
            name = name_for(self.steps, self.roadmap)
        if len(name) > MAX_NAME:
            digest = hashlib.sha256(",".join(self.steps).encode()).hexdigest()[:8]
            name = f"{CUSTOM_PREFIX}{digest}"
        name = self.roadmap.network_name(name)
        return name + (f"@{self.size.label}" if self.size else "")

    @property
    def about(self) -> str:
        """The step a row is about (the last one), or the spec file's name."""
        return self.steps[-1] if self.steps else Path(self.start_file).stem

    @property
    def is_roadmap_prefix(self) -> bool:
        """Whether this is the paper's roadmap up to some step (the paper has numbers for it)."""
        paper = registry.paper_roadmap(self.roadmap)
        return self.start is None and self.size is None and self.steps == paper[: len(self.steps)]

    def spec(self, num_classes: int | None = None) -> NetSpec:
        """The network's spec; ``num_classes`` replaces the class count when given."""
        spec = _apply(self.steps, self.start, self.roadmap)
        if self.size is not None:
            spec = validate(scale(spec, self.size))
        if num_classes is not None:
            spec = validate(replace(spec, num_classes=num_classes))
        return spec

    def cli_args(self) -> str:
        """The options that select this network again (for messages and commands)."""
        size = f" --size {self.size.label}" if self.size else ""
        roadmap = self.roadmap.option()
        unsized = dataclasses.replace(self, size=None)
        if unsized.is_roadmap_prefix:
            return f"--upto {self.steps[-1]}{size}{roadmap}"
        spec = f"--spec {self.start_file} " if self.start is not None else ""
        steps = f"--steps {','.join(self.steps)}" if self.steps else ""
        return (spec + steps).strip() + size + roadmap

    @property
    def paper(self) -> PaperResult | None:
        """The paper's numbers for this network (:mod:`roadmap.arch.paper`), or None when the
        paper never measured it. The roadmap up to a step is filed under the step's name
        (whatever the network's name: a plugin's step after the paper's is
        ``alternating_se+step``); anything else (a control, a family member) under its name."""
        prefix = self.steps and tuple(registry.resolve_steps(self.steps[-1], roadmap=self.roadmap))
        if self.start is None and self.size is None and self.steps == prefix:
            return registry.get_step(self.steps[-1], self.roadmap).paper
        registry.all_steps(self.roadmap)  # a roadmap's package files its other networks
        return paper.reported(self.name)

    def prefix(self, length: int) -> Selection:
        """The same start (and size) with only the first ``length`` steps."""
        return dataclasses.replace(self, steps=self.steps[:length])

    def before_last_step(self) -> Selection | None:
        """The network the last step was applied to: None when there is none (the base step
        alone builds from nothing; a spec file without steps is its own start)."""
        n = len(self.steps) - 1
        return self.prefix(n) if n > 0 or (n == 0 and self.start is not None) else None

    def last_changes(self, num_classes: int | None = None) -> list[Change]:
        """What the last step changed: the spec diff from :meth:`before_last_step` (empty when
        there is no network before it)."""
        before = self.before_last_step()
        return diff(before.spec(num_classes), self.spec(num_classes)) if before else []


@functools.lru_cache(maxsize=256)
def _apply(steps: tuple[str, ...], start: NetSpec | None, roadmap: Roadmap) -> NetSpec:
    """Steps are pure functions of a spec, so their result can be reused."""
    return registry.apply_steps(steps, roadmap, start)


def _size(roadmap: Roadmap, text: str) -> Size:
    """``--size`` in ``roadmap``'s family."""
    return parse_size(text, roadmap.family, roadmap.name)


def name_for(steps: Sequence[str], roadmap: Roadmap | str) -> str:
    """The name of a step list that starts with the base step, within its roadmap (see the
    module docstring; :attr:`Selection.name` adds the roadmap's prefix)."""
    paper = registry.paper_roadmap(roadmap)
    k = 1
    while k < len(steps) and steps[k] in paper and _in_order(steps[: k + 1], paper):
        k += 1
    head, plus = list(steps[:k]), list(steps[k:])
    prefix = paper[: paper.index(head[-1]) + 1] if head[-1] in paper else head
    minus = [s for s in prefix if s not in head]
    if len(minus) <= len(head) - 1:
        text = head[-1] + "".join(f"-{m}" for m in minus)
    else:
        text = head[0] + "".join(f"+{s}" for s in head[1:])
    return text + "".join(f"+{s}" for s in plus)


def _in_order(names: Sequence[str], paper: Sequence[str]) -> bool:
    return list(names) == sorted(names, key=paper.index)


def _dupes(names: Sequence[str]) -> set[str]:
    return {n for n in names if names.count(n) > 1}
