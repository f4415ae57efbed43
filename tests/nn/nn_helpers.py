"""Shared helpers for the legoml.nn tests: random valid node configs and module comparison."""

from __future__ import annotations

import random
import string
from typing import Any

import torch
from torch import nn
from torch.nn.parameter import is_lazy

import legoml.nn as L
from legoml.nn import _schema
from legoml.nn.blocks import BatchNorm1dNode, GroupNormNode, LayerNormNode, NormNode, StageNode
from legoml.nn.node import node_fields

MODULE_BASES = (L.ModuleNode,)


def builtin_nodes() -> dict[str, type[L.Node]]:
    """Registered node types that legoml.nn itself defines (test-defined ones excluded)."""
    return {
        tag: cls
        for tag, cls in L.registered_nodes().items()
        if cls.__module__.startswith("legoml.nn.")
    }


def _int_range(check: L.Check) -> tuple[int, int]:
    low = 0
    if check.ge is not None:
        low = int(check.ge)
    if check.gt is not None:
        low = int(check.gt) + 1
    high = low + 6
    if check.le is not None:
        high = min(high, int(check.le))
    if check.lt is not None:
        high = min(high, int(check.lt) - 1)
    return low, high


def _float_range(check: L.Check) -> tuple[float, float]:
    low = 0.0
    if check.ge is not None:
        low = float(check.ge)
    if check.gt is not None:
        low = float(check.gt) + 1e-3
    high = low + 2.0
    if check.le is not None:
        high = min(high, float(check.le))
    if check.lt is not None:
        high = min(high, float(check.lt) - 1e-3)
    return low, high


def random_value(spec: _schema.Spec, rng: random.Random, depth: int) -> Any:
    """A random value that ``spec`` accepts (nodes drawn from the built-in registry)."""
    if isinstance(spec, _schema._Int):
        return rng.randint(*_int_range(spec.check))
    if isinstance(spec, _schema._Float):
        return round(rng.uniform(*_float_range(spec.check)), 6)
    if isinstance(spec, _schema._Exact):
        if spec.kind is bool:
            return rng.random() < 0.5
        if spec.kind is str:
            return "".join(rng.choices(string.ascii_letters + " é'\"\\", k=rng.randint(1, 8)))
        return None
    if isinstance(spec, _schema._Literal):
        return rng.choice(spec.choices)
    if isinstance(spec, _schema._Union):
        return random_value(rng.choice(spec.members), rng, depth)
    if isinstance(spec, _schema._Sequence):
        if spec.items is not None:
            return tuple(random_value(s, rng, depth) for s in spec.items)
        low = spec.check.min_len or 0
        count = rng.randint(low, low + 3)
        assert spec.item is not None
        items = [random_value(spec.item, rng, depth + 1) for _ in range(count)]
        return tuple(items) if spec.kind is tuple else items
    if isinstance(spec, _schema._Dict):
        keys = rng.sample(["a", "b", "lr", "w"], rng.randint(0, 3))
        return {k: random_value(spec.value, rng, depth + 1) for k in keys}
    if isinstance(spec, _schema._Node):
        choices = [c for c in builtin_nodes().values() if issubclass(c, spec.cls)]
        cls = rng.choice(sorted(choices, key=lambda c: c.__name__))
        return random_node(cls, rng, depth + 1)
    raise AssertionError(f"no generator for {spec!r}")


def random_node(cls: type[L.Node], rng: random.Random, depth: int = 0) -> L.Node:
    """A random valid instance of ``cls`` (each field randomized or left at its default)."""
    fields = node_fields(cls)
    for _ in range(60):
        kwargs = {
            name: random_value(f.spec, rng, depth)
            for name, f in fields.items()
            if depth < 3 and rng.random() < 0.6
        }
        try:
            return cls(**kwargs)
        except L.ConfigError:
            continue
    return cls()


def build_with_input(node: L.ModuleNode) -> tuple[nn.Module, torch.Tensor | None]:
    """Build a module node and make an input it should accept (None: do not run it).

    Norm nodes get the width their input has; inputs come from the current torch seed.
    """
    if isinstance(node, NormNode):
        declared = [getattr(node, n, None) for n in ("num_features", "num_channels")]
        declared.append(getattr(node, "normalized_shape", None))
        fallback = node.num_groups * 2 if isinstance(node, GroupNormNode) else 6
        width = next((d for d in declared if d is not None), fallback)
        shape = {
            BatchNorm1dNode: (4, width),
            LayerNormNode: (4, 3, width),
        }.get(type(node), (4, width, 5, 5))
        return node.build(width), torch.randn(*shape)
    module = node.build()
    if isinstance(node, L.TinyCNNNode):
        return module, torch.randn(2, node.in_channels, *(node.input_size or (28, 28)))
    if isinstance(node, L.ResidualBlockNode):
        return module, torch.randn(2, node.in_channels or node.out_channels, 32, 32)
    if isinstance(node, StageNode):
        return module, torch.randn(2, getattr(node, "in_channels", None) or 3, 32, 32)
    if isinstance(node, (L.MLPNode, L.LinearBlockNode)):
        return module, torch.randn(2, node.in_features or 6)
    if isinstance(node, L.SequentialNode):
        return module, None
    return module, torch.randn(2, 3, 12, 12)


def assert_same_modules(a: nn.Module, b: nn.Module) -> None:
    """Same parameter/buffer names, laziness, shapes and values."""
    sa = dict(a.named_parameters()) | dict(a.named_buffers())
    sb = dict(b.named_parameters()) | dict(b.named_buffers())
    assert sa.keys() == sb.keys()
    for name, ta in sa.items():
        tb = sb[name]
        assert is_lazy(ta) == is_lazy(tb), name
        if not is_lazy(ta):
            assert ta.shape == tb.shape, name
            assert torch.equal(ta, tb), name
