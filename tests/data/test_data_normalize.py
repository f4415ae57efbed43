"""normalize_images / channel_stats / pixel_stats: scalar and per-channel, and bad input."""

from __future__ import annotations

import pytest
import torch

from legoml.data import DataConfigError, normalize_images, pixel_stats
from legoml.data.normalize import channel_stats


def test_defaults_only_scale_to_unit_range_and_add_the_channel_axis() -> None:
    images = torch.tensor([[[0, 255], [51, 102]]], dtype=torch.uint8)
    x = normalize_images(images)
    assert x.shape == (1, 1, 2, 2) and x.dtype == torch.float32
    assert torch.allclose(x[0, 0], torch.tensor([[0.0, 1.0], [0.2, 0.4]]), atol=1e-7)


def test_scalar_path_is_the_classic_mnist_formula() -> None:
    images = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    expected = images.unsqueeze(1).float().mul_(1.0 / (255.0 * 0.3081)).sub_(0.1307 / 0.3081)
    assert torch.equal(normalize_images(images, 0.1307, 0.3081), expected)
    assert torch.equal(normalize_images(images, (0.1307,), [0.3081]), expected)


def test_per_channel_statistics_apply_to_their_channel() -> None:
    images = torch.randint(0, 256, (3, 3, 4, 5), dtype=torch.uint8)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    x = normalize_images(images, mean, std)
    for c in range(3):
        assert torch.equal(x[:, c : c + 1], normalize_images(images[:, c], mean[c], std[c]))
    # One mean with per-channel std (and a tensor) broadcast the same way.
    mixed = normalize_images(images, torch.tensor(0.1), (0.2, 0.3, 0.4))
    assert torch.equal(mixed[:, 0], x[:, 0])


@pytest.mark.parametrize(
    ("mean", "std", "match"),
    [
        ((0.1, 0.2), 1.0, "mean has 2 values for 3-channel images: pass one value or 3"),
        (0.0, (1.0, 1.0, 1.0, 1.0), "std has 4 values"),
        (0.0, 0.0, "std must be > 0"),
        (0.0, (1.0, -1.0, 1.0), "std must be > 0"),
        (float("inf"), 1.0, "finite"),
        (None, 1.0, "number or a sequence"),
        ("abc", 1.0, "number or a sequence"),
        ((0.1, "x", 0.2), 1.0, "numbers only"),
    ],
)
def test_bad_statistics_are_refused_in_one_line(mean: object, std: object, match: str) -> None:
    with pytest.raises(DataConfigError, match=match) as err:
        channel_stats(mean, std, 3, "Thing")  # type: ignore[arg-type]
    assert str(err.value).startswith("Thing ") and "\n" not in str(err.value)


def test_normalize_images_needs_a_batch() -> None:
    with pytest.raises(DataConfigError, match="N×H×W or N×C×H×W"):
        normalize_images(torch.zeros(28, dtype=torch.uint8))


def test_pixel_stats_are_exact_per_channel() -> None:
    images = torch.randint(0, 256, (20, 3, 6, 7), dtype=torch.uint8)
    means, stds = pixel_stats(images)
    unit = images.double() / 255
    for c in range(3):
        assert means[c] == pytest.approx(float(unit[:, c].mean()), abs=1e-12)
        assert stds[c] == pytest.approx(float(unit[:, c].std(unbiased=False)), abs=1e-12)
    assert pixel_stats(torch.full((2, 3, 3), 255, dtype=torch.uint8)) == ((1.0,), (0.0,))
    for bad in (torch.zeros(0, 2, 2, dtype=torch.uint8), torch.zeros(2, 2, 2)):
        with pytest.raises(DataConfigError, match="non-empty uint8"):
            pixel_stats(bad)
