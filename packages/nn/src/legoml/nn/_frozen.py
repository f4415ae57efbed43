"""Read-only list and dict used for node fields, so a frozen node stays frozen all the way down.

They subclass ``list``/``dict`` so equality, ``isinstance`` and JSON encoding work unchanged;
every mutating method raises and points to ``Node.fork``.
"""

from __future__ import annotations

from typing import Any, NoReturn, TypeVar

__all__ = ["FrozenDict", "FrozenList"]

T = TypeVar("T")
V = TypeVar("V")


def _refuse(self: object, *args: object, **kwargs: object) -> NoReturn:
    raise TypeError(f"{type(self).__name__} in a node is read-only; use node.fork(...) instead")


class FrozenList(list[T]):
    """A list that refuses changes (node fields of type ``list[...]``)."""

    __slots__ = ()
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self))

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenList, (list(self),))

    def __repr__(self) -> str:
        return list.__repr__(self)


class FrozenDict(dict[str, V]):
    """A dict that refuses changes (node fields of type ``dict[str, ...]``)."""

    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = _refuse
    pop = popitem = clear = update = setdefault = _refuse

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))

    def __repr__(self) -> str:
        return dict.__repr__(self)
