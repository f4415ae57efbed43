"""What a step function returns: a small protocol and three ready-made kinds.

Callbacks read ``output.loss`` (every kind) and ``output.predictions`` /
``output.targets`` (supervised kinds, reconstruction outputs, and dicts that carry those
keys). A plain ``dict``
returned by a step is wrapped in :class:`DictStepOutput` by the engine.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

__all__ = [
    "DictStepOutput",
    "StepOutput",
    "SupervisedStepOutput",
    "UnsupervisedStepOutput",
]


@runtime_checkable
class StepOutput(Protocol):
    """Anything with a ``loss`` (a scalar tensor or ``None``) and a ``metadata`` mapping."""

    @property
    def loss(self) -> Tensor | None: ...

    @property
    def metadata(self) -> Mapping[str, Any]: ...


@dataclass(slots=True)
class SupervisedStepOutput:
    """Output of a supervised step: loss, detached predictions and the targets.

    Example:
        >>> import torch
        >>> out = SupervisedStepOutput(torch.tensor(0.5), torch.zeros(2, 3), torch.tensor([0, 1]))
        >>> out.predictions.shape
        torch.Size([2, 3])
    """

    loss: Tensor | None
    predictions: Tensor
    targets: Tensor
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class UnsupervisedStepOutput:
    """Output of an unsupervised step (auto-encoders, contrastive learning...).

    ``targets`` is what the reconstruction should match (usually the inputs);
    ``predictions`` reads ``reconstructions``, so :class:`MetricsCallback` and metrics of
    ``(predictions, targets)`` work on reconstruction outputs unchanged.

    Example:
        >>> import torch
        >>> UnsupervisedStepOutput(torch.tensor(1.0)).reconstructions is None
        True
        >>> x = torch.zeros(2, 3)
        >>> out = UnsupervisedStepOutput(torch.tensor(0.0), x + 1, None, {}, x)
        >>> out.predictions is out.reconstructions, out.targets is x
        (True, True)
    """

    loss: Tensor | None
    reconstructions: Tensor | None = None
    embeddings: Tensor | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    targets: Tensor | None = None

    @property
    def predictions(self) -> Tensor | None:
        """The reconstructions, under the name metrics read."""
        return self.reconstructions


class DictStepOutput(Mapping[str, Any]):
    """A read-only view of a dict returned by a step, with attribute access to its keys.

    ``loss`` is ``None`` and ``metadata`` is the dict itself when those keys are absent;
    other keys (``predictions``, ``targets``...) read as attributes.

    Example:
        >>> out = DictStepOutput({"loss": None, "targets": [1, 2]})
        >>> out.targets, out["targets"]
        ([1, 2], [1, 2])
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    @property
    def loss(self) -> Tensor | None:
        value: Tensor | None = self._data.get("loss")
        return value

    @property
    def metadata(self) -> Mapping[str, Any]:
        value = self._data.get("metadata")
        return value if isinstance(value, Mapping) else self._data

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(
                f"step output has no key {name!r}; the step returned keys {sorted(self._data)}"
            ) from None

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"DictStepOutput({dict(self._data)!r})"
