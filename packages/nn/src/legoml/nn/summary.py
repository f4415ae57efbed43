"""Model summary: parameter counts and each layer's output shape for one input shape."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from legoml.nn._lazy import has_lazy, materialize

__all__ = [
    "LayerInfo",
    "ModelSummary",
    "count_parameters",
    "has_lazy",
    "materialize",
    "summarize",
]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of (initialized) parameter values, shared parameters counted once."""
    return sum(
        p.numel()
        for p in model.parameters()
        if not nn.parameter.is_lazy(p) and (p.requires_grad or not trainable_only)
    )


@dataclass(frozen=True)
class LayerInfo:
    """One leaf layer: its dotted name, class, output shape and own parameter count."""

    name: str
    kind: str
    output_shape: tuple[int, ...] | None
    num_params: int


@dataclass(frozen=True)
class ModelSummary:
    """What ``summarize`` measured; ``str()`` gives a text table."""

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...] | None
    total_params: int
    trainable_params: int
    layers: list[LayerInfo] = field(default_factory=list)

    def __str__(self) -> str:
        rows = [("layer", "type", "output shape", "params")]
        rows += [
            (
                layer.name,
                layer.kind,
                "-" if layer.output_shape is None else str(list(layer.output_shape)),
                f"{layer.num_params:,}",
            )
            for layer in self.layers
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [
            "  ".join(
                cell.rjust(w) if i == 3 else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
            for row in rows
        ]
        rule = "-" * len(lines[0])
        lines.insert(1, rule)
        lines += [
            rule,
            f"input {list(self.input_shape)} -> output "
            f"{'-' if self.output_shape is None else list(self.output_shape)}",
            f"total params: {self.total_params:,}  trainable: {self.trainable_params:,}",
        ]
        return "\n".join(lines)


def _shape(output: Any) -> tuple[int, ...] | None:
    """Shape of a tensor output, or of the first tensor in a tuple/list/dict output."""
    if isinstance(output, torch.Tensor):
        return tuple(output.shape)
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        for item in output:
            found = _shape(item)
            if found is not None:
                return found
    return None


def summarize(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> ModelSummary:
    """Run one dummy forward pass (eval mode, no grad) and report every leaf layer.

    ``input_shape`` includes the batch dimension. Lazy layers are materialized first, so
    this also works on freshly built models with ``nn.LazyLinear``.

    >>> s = summarize(nn.Sequential(nn.Flatten(), nn.LazyLinear(10)), (1, 1, 28, 28))
    >>> s.total_params, s.layers[1].output_shape
    (7850, (1, 10))
    """
    materialize(model, input_shape, dtype=dtype, device=device)
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    shapes: dict[str, tuple[int, ...] | None] = {}
    leaves = [
        (name, m)
        for name, m in model.named_modules()
        if name and (not list(m.children()) or list(m.parameters(recurse=False)))
    ]
    handles = [
        module.register_forward_hook(
            lambda _m, _i, out, name=name: shapes.__setitem__(name, _shape(out))
        )
        for name, module in leaves
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(torch.zeros(tuple(input_shape), dtype=dtype, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    layers = [
        LayerInfo(
            name=name,
            kind=type(module).__name__,
            output_shape=shapes.get(name),
            num_params=sum(p.numel() for p in module.parameters(recurse=False)),
        )
        for name, module in leaves
    ]
    return ModelSummary(
        input_shape=tuple(input_shape),
        output_shape=_shape(output),
        total_params=count_parameters(model),
        trainable_params=count_parameters(model, trainable_only=True),
        layers=layers,
    )
