"""MkDocs hook: the public API page lists exactly what ``import roadmap`` exports.

``roadmap/__init__.py`` loads its names lazily (PEP 562), so the API reference cannot read
them from the package statically; this hook writes one mkdocstrings block per defining module,
with that module's exported names, from the package's own table (``roadmap._EXPORTS``), in
place of the ``<!-- public api -->`` marker.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

MARKER = "<!-- public api -->"


def public_api_markdown() -> str:
    """One ``::: module`` block per module, members limited to the exported names."""
    import roadmap

    by_module: dict[str, list[str]] = defaultdict(list)
    for name, module in roadmap._EXPORTS.items():
        by_module[module].append(name)
    blocks = []
    for module, names in by_module.items():
        members = "\n".join(f"        - {n}" for n in names)
        blocks.append(
            f"## `{module}`\n\n::: {module}\n    options:\n      show_root_heading: false\n"
            f"      heading_level: 3\n      members:\n{members}\n"
        )
    return "\n".join(blocks)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, public_api_markdown())
    return markdown
