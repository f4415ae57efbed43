"""Field types for node fields, defined once: ``width: Positive = 64``.

Each is an ``Annotated`` type carrying a ``Check``, so a config that breaks the limit is refused
with the field path (``channels[1]: must be >= 1, got 0``). ``positive_int`` applies the same
rule to a plain argument, such as the ``total_steps`` a scheduler is built with.

>>> from dataclasses import dataclass
>>> from legoml.nn import ConfigError, Node
>>> @dataclass(frozen=True)
... class BatchNode(Node, register=False):
...     size: Positive = 32
...     dropout: Probability = 0.0
>>> BatchNode(size=0)
Traceback (most recent call last):
...
legoml.nn.errors.ConfigError: size: must be >= 1, got 0
"""

from __future__ import annotations

from typing import Annotated

from legoml.nn._check import Check
from legoml.nn.errors import ConfigError

__all__ = [
    "Check",
    "NonNegative",
    "NonNegativeFloat",
    "Positive",
    "PositiveFloat",
    "Probability",
    "positive_int",
]

#: An int >= 1: sizes, channel counts, kernel sizes, strides.
Positive = Annotated[int, Check(ge=1)]
#: An int >= 0: padding, counts that may be zero.
NonNegative = Annotated[int, Check(ge=0)]
#: A float > 0: learning rates, epsilons, factors.
PositiveFloat = Annotated[float, Check(gt=0.0)]
#: A float >= 0: weight decay, momentum, minimum learning rates.
NonNegativeFloat = Annotated[float, Check(ge=0.0)]
#: A float in [0, 1): dropout rates, Adam betas, warmup fractions.
Probability = Annotated[float, Check(ge=0.0, lt=1.0)]


def positive_int(value: object, path: str) -> int:
    """``value`` if it is an int >= 1 (``True`` is refused), else a ``ConfigError`` at ``path``.

    >>> positive_int(0, "total_steps")
    Traceback (most recent call last):
    ...
    legoml.nn.errors.ConfigError: total_steps: must be an int >= 1, got 0
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"must be an int >= 1, got {value!r}", path)
    return value
