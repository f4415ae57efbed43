"""legoml.core.values: the one int check and scalar conversion the packages share."""

from __future__ import annotations

import pytest
import torch

from legoml.core import Context, CoreError, EarlyStopping, Engine
from legoml.core.errors import CallbackError, EngineError
from legoml.core.values import is_int, require_int, to_scalar


@pytest.mark.parametrize("value", [0, 1, -3, 2**40])
def test_ints_are_ints(value: int) -> None:
    assert is_int(value)


@pytest.mark.parametrize("value", [True, False, 1.0, "1", None, torch.tensor(1)])
def test_bools_floats_strings_and_tensors_are_not(value: object) -> None:
    assert not is_int(value)


def test_require_int_names_the_value_and_the_bound() -> None:
    assert require_int(5, "x") == 5
    assert require_int(0, "x", minimum=0) == 0
    assert require_int(None, "x", optional=True) is None
    with pytest.raises(CoreError, match=r"^x must be an int >= 1, got 0$"):
        require_int(0, "x")
    with pytest.raises(CoreError, match=r"^x must be None or an int >= 1, got True$"):
        require_int(True, "x", optional=True)
    with pytest.raises(EngineError, match="got 2.0"):
        require_int(2.0, "x", error=EngineError)


def test_the_callers_share_the_message() -> None:
    with pytest.raises(CallbackError, match=r"EarlyStopping\(patience=...\) must be an int >= 1, got True"):
        EarlyStopping(monitor="val/loss", patience=True)
    engine = Engine(lambda e, b, c: {"loss": b}, Context(torch.nn.Identity()))
    with pytest.raises(EngineError, match=r"loop\(max_epochs=...\) must be an int >= 1, got 0"):
        engine.loop([torch.tensor(1.0)], max_epochs=0)


def test_to_scalar() -> None:
    assert to_scalar(torch.tensor(2.5, dtype=torch.bfloat16)) == 2.5
    assert to_scalar(torch.ones(1, requires_grad=True)) == 1.0
    assert to_scalar(3) == 3.0
    assert to_scalar(True) is None
    assert to_scalar(torch.ones(2)) is None
    assert to_scalar("1") is None
