"""Optimizer nodes that bind to a model's parameters, with weight-decay param groups.

Given a module, biases, normalization weights and every other 1-d parameter go to a group
with ``weight_decay=0`` (decaying them only hurts); the rest get the node's weight decay.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.parameter import is_lazy

from legoml.nn.errors import BuildError, ConfigError
from legoml.nn.node import Node
from legoml.nn.types import NonNegativeFloat, PositiveFloat, Probability

__all__ = [
    "AdamNode",
    "AdamWNode",
    "OptimizerNode",
    "ParamsLike",
    "SGDNode",
    "param_groups",
]

ParamsLike = nn.Module | Iterable[torch.Tensor] | Iterable[Mapping[str, Any]]

_NORMS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


def param_groups(
    params: ParamsLike, weight_decay: float, *, decay_norm_and_bias: bool = False
) -> list[dict[str, Any]]:
    """Split trainable parameters into a decayed and a ``weight_decay=0`` group.

    ``params`` may be a module (norm layers are recognised), an iterable of tensors (split
    by dimension) or ready param-group dicts (returned as given, ``weight_decay`` filled in
    where missing). Empty groups are left out; shared parameters appear once.

    >>> groups = param_groups(nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)), 0.05)
    >>> [(len(g["params"]), g["weight_decay"]) for g in groups]
    [(1, 0.05), (3, 0.0)]
    """
    decay: list[torch.Tensor] = []
    no_decay: list[torch.Tensor] = []
    seen: set[int] = set()

    def place(tensor: torch.Tensor, exempt: bool) -> None:
        if id(tensor) in seen or not tensor.requires_grad:
            return
        seen.add(id(tensor))
        if is_lazy(tensor):
            raise BuildError(
                "the model still has lazy (uninitialized) layers; run one forward pass first, "
                "with one batch shaped like your data: legoml.nn.materialize(model, (1, C, H, W)) "
                "for images of C channels and H×W pixels (or set the node's input_size)"
            )
        exempt = exempt or tensor.ndim <= 1
        (no_decay if exempt and not decay_norm_and_bias else decay).append(tensor)

    if isinstance(params, nn.Module):
        for module in params.modules():
            for name, tensor in module.named_parameters(recurse=False):
                place(tensor, name == "bias" or isinstance(module, _NORMS))
    else:
        items = list(params)
        if items and all(isinstance(item, Mapping) for item in items):
            return [{"weight_decay": weight_decay, **item} for item in items]  # type: ignore[dict-item]
        for item in items:
            if not isinstance(item, torch.Tensor):
                raise BuildError(f"expected a module, tensors or param-group dicts, got {item!r}")
            place(item, False)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise BuildError("no trainable parameters to optimize (all frozen or none given)")
    return groups


class OptimizerNode(Node, register=False):
    """Base of optimizer nodes: ``build(model_or_params)`` returns a ``torch.optim.Optimizer``."""

    weight_decay: float
    decay_norm_and_bias: bool
    foreach: bool | None
    fused: bool | None

    def validate(self) -> None:
        if self.foreach and self.fused:
            raise ConfigError("foreach and fused cannot both be true; set one to null", "fused")

    def _speed(self) -> dict[str, Any]:
        """``foreach``/``fused`` only when set, so torch picks its default otherwise."""
        return {
            k: v for k, v in (("foreach", self.foreach), ("fused", self.fused)) if v is not None
        }

    def _create(self, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        raise NotImplementedError

    def build(self, params: ParamsLike) -> torch.optim.Optimizer:
        """The optimizer over ``params`` (a module, tensors or param-group dicts)."""
        groups = param_groups(
            params, self.weight_decay, decay_norm_and_bias=self.decay_norm_and_bias
        )
        return self._create(groups)


@dataclass(frozen=True)
class SGDNode(OptimizerNode):
    """``torch.optim.SGD`` (momentum 0.9 by default).

    >>> opt = SGDNode(lr=0.1).build(nn.Linear(2, 1))
    >>> opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"]
    (0.1, 0.9)
    """

    lr: PositiveFloat = 0.01
    momentum: NonNegativeFloat = 0.9
    dampening: NonNegativeFloat = 0.0
    nesterov: bool = False
    weight_decay: NonNegativeFloat = 0.0
    decay_norm_and_bias: bool = False
    foreach: bool | None = None
    fused: bool | None = None

    def validate(self) -> None:
        super().validate()
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ConfigError("needs momentum > 0 and dampening == 0", "nesterov")

    def _create(self, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        return torch.optim.SGD(
            groups,
            lr=self.lr,
            momentum=self.momentum,
            dampening=self.dampening,
            weight_decay=self.weight_decay,
            nesterov=self.nesterov,
            **self._speed(),
        )


@dataclass(frozen=True)
class AdamNode(OptimizerNode):
    """``torch.optim.Adam`` (L2 weight decay added to the gradient; see ``AdamWNode``)."""

    lr: PositiveFloat = 1e-3
    betas: tuple[Probability, Probability] = (0.9, 0.999)
    eps: PositiveFloat = 1e-8
    weight_decay: NonNegativeFloat = 0.0
    amsgrad: bool = False
    decay_norm_and_bias: bool = False
    foreach: bool | None = None
    fused: bool | None = None

    _optimizer_class: ClassVar[type[torch.optim.Adam] | type[torch.optim.AdamW]] = torch.optim.Adam

    def _create(self, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        return self._optimizer_class(
            groups,
            lr=self.lr,
            betas=self.betas,
            eps=self.eps,
            weight_decay=self.weight_decay,
            amsgrad=self.amsgrad,
            **self._speed(),
        )


@dataclass(frozen=True)
class AdamWNode(AdamNode):
    """``torch.optim.AdamW`` (decoupled weight decay, 0.01 by default); fields as ``AdamNode``.

    >>> opt = AdamWNode(lr=3e-4).build(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)))
    >>> [g["weight_decay"] for g in opt.param_groups]
    [0.01, 0.0]
    """

    weight_decay: NonNegativeFloat = 0.01

    _optimizer_class = torch.optim.AdamW
