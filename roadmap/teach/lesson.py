"""Lessons: what one step changes, shown from the code itself, so it cannot drift from it.

``lesson(step)`` gathers everything ``roadmap explain`` and ``roadmap walkthrough`` show: the
step's docstring, the spec diff against the previous step, one affected block before and after
(as the built modules), the measured deltas and the paper's numbers, and the commands that
reproduce it. ``lesson_markdown`` renders one as Markdown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from roadmap.arch import registry
from roadmap.arch.builder import build
from roadmap.arch.registry import Step
from roadmap.arch.roadmaps import Roadmap, get_roadmap
from roadmap.arch.selection import Selection
from roadmap.arch.spec import NetSpec
from roadmap.arch.spec_diff import Change, ChangeGroup, group_changes, split_block_path
from roadmap.errors import RoadmapError
from roadmap.measure import host, profile
from roadmap.measure.profile import Profile
from roadmap.report import profile_table
from roadmap.report.catalogue import paper_columns
from roadmap.study import comparison
from roadmap.study.plan import prefixes
from roadmap.teach import diagram
from roadmap.teach.diagram import Diagram


@dataclass
class Lesson:
    """One step, explained.

    Attributes:
        step: the registered step.
        index: its position in the roadmap (the registry's order).
        network: the network after the step (the roadmap up to it, or a spec file plus steps).
        changes: spec changes against the network before the step (empty for the base step).
        block_path: the module path of the example block ("head" or a block path), or None.
        before: that module before the step (None if it did not exist).
        after: that module after the step (None if the step removed it).
        study: the previous network (if any) and this one, measured, with deltas.
        diagrams: the changed part drawn from the spec: before, after, and after once fused
            when re-parameterization folds branches (the paper's Figures 3 and 4).
        profiles: where the time goes before and after the step, by layer kind
            (:mod:`roadmap.measure.profile`); empty when not measured.
        profile_note: why there are no profiles, when latency was measured but not profiled.
    """

    step: Step
    index: int
    network: Selection
    changes: list[Change]
    block_path: str | None
    before: nn.Module | None
    after: nn.Module | None
    study: comparison.Study
    diagrams: list[Diagram] = field(default_factory=list)
    profiles: list[Profile] = field(default_factory=list)
    profile_note: str | None = None

    @property
    def rows(self) -> list[comparison.Row]:
        """The study's rows: the previous network (if any), then this one."""
        return self.study.rows

    @property
    def steps(self) -> list[str]:
        """The steps of the network after this one (a spec file's network starts elsewhere)."""
        return list(self.network.steps)

    @property
    def previous(self) -> Selection | None:
        """The network the step was applied to (None for the base step)."""
        return self.network.before_last_step()

    @property
    def commands(self) -> list[str]:
        """Commands that reproduce the step's numbers."""
        select = self.network.cli_args()
        spec = f" --spec {self.network.start_file}" if self.network.start is not None else ""
        spec += self.network.roadmap.option()
        return [
            f"roadmap build {select}",
            f"roadmap latency {select}",
            f"roadmap profile {select}",
            f"roadmap train {select} --data digits --recipe quick",
            f"roadmap explain {self.step.name}{spec}",
        ]


def lesson(
    name: str,
    roadmap: Roadmap | str,
    *,
    latency_settings: Any = None,
    rows: list[comparison.Row] | None = None,
    start: Selection | None = None,
    progress: Callable[[str], None] | None = None,
    measure: bool = True,
    parts: bool = True,
) -> Lesson:
    """Explain one roadmap step.

    Args:
        name: the step (of ``roadmap``).
        roadmap: whose step.
        latency_settings: measure the fused latency of the network before and after the step,
            and (torch eager on the CPU only) profile where its time goes by layer kind.
        rows: already measured study rows of the roadmap's prefixes to take the numbers from
            (the walkthrough measures all steps once); ``latency_settings`` is then unused.
        start: apply the step to this network (e.g. a spec file's) instead of the roadmap
            up to the step before it.
        measure: count (and with ``latency_settings`` time) the networks; without it the
            lesson holds only what the code decides (text, diff, diagrams, blocks), as a
            notebook's text does.
        parts: build the example block before and after and draw the diagrams; without them
            the lesson holds its text, diff and numbers (a notebook's numbers cell).
    """
    step = registry.get_step(name, roadmap)
    if start is None:
        network = Selection(tuple(registry.resolve_steps(step.name, roadmap=roadmap)), roadmap)
    else:
        network = Selection(
            (*start.steps, step.name), get_roadmap(roadmap), start.start, start.start_file
        )
    index = registry.list_steps(roadmap).index(step.name)
    les = Lesson(step, index, network, [], None, None, None, comparison.Study([]))
    after = network.spec()
    before = les.previous.spec() if les.previous else None
    les.changes = network.last_changes()
    les.block_path = example_path(les.changes)
    if parts:
        les.before, les.after = _module(before, les.block_path), _module(after, les.block_path)
        les.diagrams = lesson_diagrams(before, after, les.block_path)
    wanted = [les.previous, network] if les.previous else [network]
    if rows is not None:
        rows = [r for r in rows if r.variant.selection in wanted]
    if not measure:
        return les
    if rows and len(rows) == len(wanted):
        les.study = comparison.Study.of(rows)
    else:
        variants = prefixes(network)[-len(wanted) :]
        les.study = comparison.collect(
            variants, latency_settings=latency_settings, progress=progress
        )
        if latency_settings is not None:
            if progress is not None:
                progress("profiling where the time goes")
            les.profiles, les.profile_note = _profiles(wanted, latency_settings)
    return les


def _profiles(networks: list[Selection], settings: Any) -> tuple[list[Profile], str | None]:
    """Profiles of the networks before and after the step (none, and why, off torch eager)."""
    try:
        profile.check(settings)
    except RoadmapError as e:
        return [], f"not profiled ({settings.backend} on {settings.device}): {e}"
    return profile.profile_selections(networks, settings), None


BASE_PARTS = ("stem", "stages.2.blocks.0", "head")  # what the starting network is made of


def lesson_diagrams(before: NetSpec | None, after: NetSpec, path: str | None) -> list[Diagram]:
    """The changed part before and after the step; the fused form too when it differs. The
    base step, which changes nothing, shows its stem, a typical block and its head."""
    if before is None:
        return [diagram.part(after, p) for p in BASE_PARTS if _has_part(after, p)]
    if path is None:
        return []
    drawn = []
    for spec, when in ((before, "before"), (after, "after")):
        if spec is not None and _has_part(spec, path):
            d = diagram.part(spec, path)
            drawn.append(replace(d, title=f"{when}: {d.title}"))
    if _has_part(after, path):
        fused = diagram.part(after, path, fused=True)
        if diagram.find(diagram.part(after, path).root, diagram.Par):  # branches fold away
            drawn.append(replace(fused, title=f"after, deployed: {fused.title}"))
    return drawn


def _has_part(spec: NetSpec, path: str) -> bool:
    try:
        diagram.part(spec, path)
    except RoadmapError:
        return False
    return True


def example_path(changes: list[Change]) -> str | None:
    """What to show before and after: a stage block the changes touch, else the whole
    downsampling layer, stem or head they touch (those are replaced as a whole: Figure 4)."""
    paths = [split_block_path(c.path)[0] for c in changes]
    in_stage = [p for p in paths if ".blocks." in p]
    if in_stage:
        return in_stage[0]
    for p in paths:
        if ".downsample." in p:
            return p.rsplit(".", 1)[0]  # stages.1.downsample.0 -> stages.1.downsample
        if p.startswith("stem.") or p == "head":
            return p.split(".")[0]
    return None


def _module(spec: NetSpec | None, path: str | None) -> nn.Module | None:
    """The part at ``path`` as built modules, for its outline (:func:`module_lines`): made on
    the meta device, where layers have their shapes but no weights to allocate or initialize."""
    if spec is None or path is None:
        return None
    try:
        with torch.device("meta"):
            return build(spec).get_submodule(path)
    except AttributeError:  # the block does not exist in this network
        return None


def module_lines(module: nn.Module | None, name: str = "", depth: int = 0) -> list[str]:
    """An indented outline of a module: one line per submodule with its key shapes."""
    if module is None:
        return ["(absent)"]
    label = f"{name}: " if name else ""
    lines = ["  " * depth + label + _describe(module)]
    for child_name, child in module.named_children():
        lines += module_lines(child, child_name, depth + 1)
    return lines


def _describe(m: nn.Module) -> str:
    kind = type(m).__name__
    if isinstance(m, nn.Conv2d):
        k, s = m.kernel_size[0], m.stride[0]
        groups = " dw" if m.groups == m.in_channels and m.groups > 1 else ""
        return f"{kind} {m.in_channels}->{m.out_channels} {k}x{k} s{s}{groups}"
    if isinstance(m, nn.Linear):
        return f"{kind} {m.in_features}->{m.out_features}"
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return f"{kind} {m.num_features}"
    return kind


# --- Markdown -----------------------------------------------------------------------------


def lesson_markdown(
    les: Lesson,
    heading: str = "##",
    image: Callable[[Diagram], str] | None = None,
    numbers: bool = True,
) -> str:
    """One lesson as Markdown: heading, lesson text, diff, diagrams (when ``image`` gives each
    diagram a source to link), block, numbers (unless ``numbers`` is False: a notebook
    measures them in a cell of its own), commands."""
    s = les.step
    parts = [f"{heading} {les.index}. `{s.name}`: {s.title} ({s.section})", "", les.step.lesson]
    if les.changes:
        groups = group_changes(les.changes)
        parts += [
            "",
            f"**What changes in the spec** ({len(les.changes)} field changes):",
            "",
            "```diff",
            *[_diff_line(g) for g in groups],
            "```",
        ]
    if les.diagrams and image is not None:
        what = f"The changed part, `{les.block_path}`" if les.block_path else "Its parts"
        parts += ["", f"**{what}, drawn from the spec:**", ""]
        parts.append(" ".join(f"![{d.title}]({image(d)})" for d in les.diagrams))
    if les.block_path:
        parts += [
            "",
            f"**One affected block, `{les.block_path}`**, before and after:",
            "",
            "```",
            "# before",
            *module_lines(les.before),
            "# after",
            *module_lines(les.after),
            "```",
        ]
    if numbers:
        parts += ["", numbers_markdown(les)]
    if les.profiles or les.profile_note:
        parts += ["", "**Where the time goes**, by layer kind (`roadmap profile`):", ""]
        parts.append(
            profile_table.profile_markdown(les.profiles) if les.profiles else les.profile_note
        )
    parts += ["", "**Reproduce:**", "", "```bash", *les.commands, "```"]
    return "\n".join(parts)


def _diff_line(g: ChangeGroup) -> str:
    """A diff-highlighted line: + added, - removed, ! changed."""
    return {"added": "+", "removed": "-"}.get(g.kind, "!") + f" {str(g)[2:]}"


def numbers_markdown(les: Lesson) -> str:
    """A small Markdown table: previous network, this one, and the paper's numbers."""
    side = les.network.roadmap.side
    side_label, unit = (side.label, f" {side.unit}") if side else ("paper —", "")
    head = f"| | params (deploy) | MACs (deploy) | latency (fused) | paper top-1 | {side_label} |"
    lines = [head, "|---|---:|---:|---:|---:|---:|"]
    for row in les.rows:
        c, lat = row.counts, row.latency
        latency = f"{lat.median_ms:.2f} ms [IQR {lat.iqr_ms:.2f}]" if lat else "not measured"
        lines.append(
            f"| `{row.variant.name}` | {c.deploy_params:,} | {c.deploy_macs / 1e6:.1f} M | "
            f"{latency} | {_num(row.paper_top1, '%')} | {_num(row.paper_side, unit)} |"
        )
    if les.rows and les.rows[-1].vs_previous:
        before, after = les.rows[0], les.rows[-1]
        lines.append(
            f"| **change** | {_delta(after, 'deploy_params', '{:+,.0f}')} | "
            f"{_delta(after, 'deploy_macs', '{:+.1f} M', 1e-6)} | "
            f"{_delta(after, 'latency_ms', '{:+.2f} ms')} | "
            f"{_paper_delta(before.paper_top1, after.paper_top1, '{:+.1f}')} | "
            f"{_paper_delta(before.paper_side, after.paper_side, '{:+.2f}' + unit)} |"
        )
    conditions = _conditions(les.study)
    return "\n".join(lines) + (f"\n\n{conditions}" if conditions else "")


def _num(value: float | None, unit: str) -> str:
    return "—" if value is None else f"{value:g}{unit}"


def _delta(row: comparison.Row, key: str, fmt: str, scale: float = 1.0) -> str:
    d = row.vs_previous.get(key)
    if d is None:
        return "—"
    text = fmt.format(d.value * scale)
    return f"{text} (within noise)" if d.noise else text


def _paper_delta(a: float | None, b: float | None, fmt: str) -> str:
    return "—" if a is None or b is None else fmt.format(b - a)


def _conditions(study: comparison.Study) -> str:
    lat = next((r.latency for r in study.rows if r.latency), None)
    if lat is None:
        return ""
    c = lat.conditions
    busy = f" **The machine was busy: {host.busy_note(c.contention)}.**" if c.busy else ""
    return (
        f"Latency: median of {lat.n} timed iterations, fused model; {c.short()}, {c.dtype}, "
        f"{c.memory_format}, {c.backend}.{busy}"
    )


def walkthrough_title(road: Roadmap) -> str:
    """``From MobileNetV3-L to RepViT-M0.9, one step at a time``."""
    start, _, end = road.title.partition(" -> ")
    return f"From {start} to {end}, one step at a time"


def walkthrough_markdown(
    lessons: list[Lesson],
    table: str,
    plot_file: str | None = None,
    image: Callable[[Diagram], str] | None = None,
) -> str:
    """All lessons as one Markdown document, for a class: intro, table, plot, then each step
    (``image`` gives each diagram a source to link: a file beside the document, or data)."""
    first, last = lessons[0].steps[0], lessons[-1].step.name
    road = get_roadmap(lessons[0].step.roadmap)
    measured = " and ".join(c.label.removeprefix("paper ") for c, _ in paper_columns(road))
    parts = [
        f"# {walkthrough_title(road)}",
        "",
        f"The paper ({road.citation}) goes from {road.title.replace(' -> ', ' to ')} one "
        f"design change at a time, reporting {measured} after every step. This walkthrough was "
        "generated by `roadmap walkthrough` from the code that builds each step "
        f"(`{first}` to `{last}`), so every "
        "diff and every count below is what the code does. Paper numbers are the paper's; "
        "every other number was measured on the machine named under the table.",
        "",
        "## The whole roadmap",
        "",
        table,
    ]
    if plot_file:
        parts += ["", f"![The roadmap: latency against accuracy, step by step]({plot_file})"]
    for les in lessons:
        parts += ["", "---", "", lesson_markdown(les, image=image)]
    return "\n".join(parts) + "\n"
