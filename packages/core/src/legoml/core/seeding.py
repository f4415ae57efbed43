"""seed_everything: one call that seeds every random generator a training run draws from."""

from __future__ import annotations

import os
import random
import sys

import torch

from legoml.core.errors import EngineError
from legoml.core.values import is_int

__all__ = ["seed_everything"]

_MAX_SEED = 2**32 - 1  # numpy's limit: the same seed must work with and without it


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python ``random``, torch (CPU and every CUDA device) and, when something has
    already imported it, numpy's global generator (core does not depend on numpy).

    ``deterministic=True`` also asks torch for deterministic kernels (warning, not failing,
    where none exists), turns off cuDNN autotuning (it picks kernels by timing) and sets
    ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` unless set, which deterministic cuBLAS needs.
    ``False`` leaves those settings as they are. ``PYTHONHASHSEED`` cannot change in a
    running process, so it is not touched.

    Example:
        >>> seed_everything(0)
        >>> a = torch.rand(2)
        >>> seed_everything(0)
        >>> torch.equal(a, torch.rand(2))
        True
    """
    if not is_int(seed) or not 0 <= seed <= _MAX_SEED:
        raise EngineError(
            f"seed_everything(seed=...) must be an int in [0, 2**32 - 1], got {seed!r}"
        )
    random.seed(seed)
    torch.manual_seed(seed)  # CPU and every CUDA device (lazily, if CUDA ever starts)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
