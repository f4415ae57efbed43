"""Old import paths kept for one release: a module ``__getattr__`` that warns, then resolves.

legoml-nn has the same helper: core and nn may not import each other.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["moved_names"]


def moved_names(module: str, moved: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` serving each old name in ``moved`` from its new dotted path.

    ``moved`` maps an old name to ``"package.module.NewName"``; using the old name emits a
    ``DeprecationWarning`` that names the import to write instead.
    """

    def __getattr__(name: str) -> Any:
        target = moved.get(name)
        if target is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        where, _, new = target.rpartition(".")
        hint = f"from {where} import {new}"
        warnings.warn(
            f"{module}.{name} is deprecated and will be removed in the next release; use {hint}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(where), new)

    return __getattr__
