"""Griffe extension: Sphinx cross-reference roles read as code in the API pages.

The package's docstrings name other objects the Sphinx way (``:class:`~roadmap.arch.spec.NetSpec```,
``:func:`fuse```), which reads well in ``help()`` and an editor; mkdocstrings renders Markdown and
would show those roles as written. This extension rewrites each role, as the docstrings are
loaded, into the code span Sphinx would display: the name as given, or its last part after a
``~``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|mod|meth|attr|data|obj|exc|const):`(~?)([^`]+)`")


def displayed(text: str) -> str:
    """Every role in ``text`` as the code span Sphinx would display."""

    def span(match: re.Match[str]) -> str:
        tilde, target = match.groups()
        return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"

    return ROLE.sub(span, text)


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **_: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = displayed(obj.docstring.value)
