"""``Check``: value limits for node fields, attached with ``typing.Annotated``."""

from __future__ import annotations

import dataclasses

from legoml.nn.errors import ConfigError

__all__ = ["Check"]


@dataclasses.dataclass(frozen=True)
class Check:
    """Limits on a field's value, attached with ``Annotated``.

    Bounds apply to numbers (also to each item of a ``tuple[Annotated[int, Check(ge=1)], ...]``),
    lengths to str/tuple/list/dict values; ``finite=False`` lets a float field hold inf/NaN.

    In a node: ``width: Annotated[int, Check(ge=1, le=4096)] = 64``.

    >>> Check(ge=1).number(0, "width")
    Traceback (most recent call last):
    ...
    legoml.nn.errors.ConfigError: width: must be >= 1, got 0
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    min_len: int | None = None
    max_len: int | None = None
    finite: bool = True

    def merge(self, other: Check) -> Check:
        """This check tightened by ``other``'s explicit settings."""
        changes = {
            f.name: getattr(other, f.name)
            for f in dataclasses.fields(other)
            if getattr(other, f.name) != f.default
        }
        return dataclasses.replace(self, **changes)

    def number(self, value: float, path: str) -> None:
        if self.ge is not None and not value >= self.ge:
            raise ConfigError(f"must be >= {self.ge}, got {value!r}", path)
        if self.gt is not None and not value > self.gt:
            raise ConfigError(f"must be > {self.gt}, got {value!r}", path)
        if self.le is not None and not value <= self.le:
            raise ConfigError(f"must be <= {self.le}, got {value!r}", path)
        if self.lt is not None and not value < self.lt:
            raise ConfigError(f"must be < {self.lt}, got {value!r}", path)

    def length(self, size: int, path: str) -> None:
        if self.min_len is not None and size < self.min_len:
            raise ConfigError(f"needs at least {self.min_len} item(s), got {size}", path)
        if self.max_len is not None and size > self.max_len:
            raise ConfigError(f"takes at most {self.max_len} item(s), got {size}", path)
