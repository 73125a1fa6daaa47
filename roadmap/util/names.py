"""Telling a user what they probably meant: one rule for every name the tool checks (steps,
recipes, data sources, sizes, block kinds, store labels)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'separate_mixers'?)"`` for the closest choice, or "" when none is close
    (difflib's ratio of at least 0.6, its default cut-off)."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
