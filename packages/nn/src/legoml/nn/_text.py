"""Short, safe renderings of user values for error messages, and "did you mean" hints."""

from __future__ import annotations

import difflib
import reprlib

__all__ = ["closest", "short"]

_REPR = reprlib.Repr()
_REPR.maxlevel = 2
_REPR.maxstring = 60
_REPR.maxother = 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 4


def short(value: object) -> str:
    """``repr(value)`` cut to a readable length (never recurses deeply)."""
    return _REPR.repr(value)


def closest(word: str, candidates: list[str], n: int = 3) -> str:
    """`` (did you mean 'a', 'b'?)`` for the nearest candidates, or an empty string."""
    by_lower: dict[str, str] = {}
    for candidate in candidates:
        by_lower.setdefault(candidate.lower(), candidate)
    # Compared case-blind, so "GeluNode" finds "GELUNode" first.
    found = [
        by_lower[f]
        for f in difflib.get_close_matches(word.lower(), list(by_lower), n=n, cutoff=0.5)
    ]
    if not found:
        return ""
    return " (did you mean " + ", ".join(repr(f) for f in found) + "?)"
