"""MeanSquaredError and MeanAbsoluteError match scikit-learn, merge, mask and reduce exactly."""

from __future__ import annotations

import pytest
import torch
from sklearn import metrics as skm

from legoml.metrics import MeanAbsoluteError, MeanSquaredError, MetricInputError


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_errors_match_sklearn_over_several_batches(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    predictions = torch.rand(50, 3, 4, generator=generator)
    targets = torch.rand(50, 3, 4, generator=generator)
    mse, mae = MeanSquaredError(), MeanAbsoluteError()
    for chunk in range(0, 50, 16):  # uneven last batch
        for metric in (mse, mae):
            metric.update(predictions[chunk : chunk + 16], targets[chunk : chunk + 16])
    flat_p, flat_t = predictions.flatten().numpy(), targets.flatten().numpy()
    assert mse.compute() == pytest.approx(skm.mean_squared_error(flat_t, flat_p), rel=1e-6)
    assert mae.compute() == pytest.approx(skm.mean_absolute_error(flat_t, flat_p), rel=1e-6)


def test_mask_drops_whole_samples_and_merge_adds_counts() -> None:
    predictions = torch.tensor([[1.0, 1.0], [5.0, 5.0], [2.0, 2.0]])
    targets = torch.zeros(3, 2)
    masked = MeanSquaredError()
    masked.update(predictions, targets, mask=torch.tensor([True, False, True]))
    assert masked.compute() == pytest.approx(2.5)  # (1 + 1 + 4 + 4) / 4
    other = MeanSquaredError()
    other.update(predictions[1:2], targets[1:2])
    assert masked.merge(other).compute() == pytest.approx((10 + 50) / 6)


def test_state_round_trips_and_reset_empties() -> None:
    metric = MeanAbsoluteError()
    metric.update(torch.tensor([3.0]), torch.tensor([1.0]))
    copy = MeanAbsoluteError()
    copy.load_state_dict(metric.state_dict())
    assert copy.compute() == 2.0
    metric.reset()
    assert metric.compute() == 0.0  # zero division gives 0


def test_shape_mismatch_is_one_clear_error() -> None:
    with pytest.raises(MetricInputError, match=r"one shape, got \(2,\) and \(3,\)"):
        MeanSquaredError().update(torch.zeros(2), torch.zeros(3))
