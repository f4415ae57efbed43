"""Batched augmentations: correctness of the geometry, determinism, RNG isolation."""

from __future__ import annotations

import pytest
import torch

from legoml.data import BatchTransform, Compose, DataConfigError, Lambda, RandomAffine, RandomShift


def shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``image`` (C×H×W) moved down ``dy`` and right ``dx`` pixels, zero fill."""
    out = torch.zeros_like(image)
    h, w = image.shape[-2:]
    src_y = slice(max(0, -dy), min(h, h - dy))
    dst_y = slice(max(0, dy), min(h, h + dy))
    src_x = slice(max(0, -dx), min(w, w - dx))
    dst_x = slice(max(0, dx), min(w, w + dx))
    out[:, dst_y, dst_x] = image[:, src_y, src_x]
    return out


def test_random_shift_moves_each_image_by_its_own_whole_pixel_offset() -> None:
    images = torch.rand(64, 2, 9, 7)
    out = RandomShift(max_shift=2)(images, torch.Generator().manual_seed(0))
    found = set()
    for image, result in zip(images, out, strict=True):
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(result, shifted(image, dy, dx))
        ]
        assert len(matches) == 1
        found.add(matches[0])
    assert len(found) > 10, "offsets are drawn per image"


def test_random_shift_zero_is_identity_and_fill_is_used() -> None:
    images = torch.rand(3, 1, 5, 5)
    assert torch.equal(RandomShift(0)(images), images)
    out = RandomShift(3, fill=-1.0)(torch.zeros(50, 1, 4, 4), torch.Generator().manual_seed(1))
    assert set(out.unique().tolist()) <= {0.0, -1.0} and (out == -1.0).any()


def test_transforms_are_deterministic_given_the_generator() -> None:
    images = torch.rand(8, 1, 28, 28)
    for transform in (RandomShift(2), RandomAffine(30.0), Compose(RandomShift(1), RandomAffine())):
        a = transform(images, torch.Generator().manual_seed(5))
        b = transform(images, torch.Generator().manual_seed(5))
        c = transform(images, torch.Generator().manual_seed(6))
        assert torch.equal(a, b) and not torch.equal(a, c)
        assert a.shape == images.shape and a.dtype == images.dtype


@pytest.mark.parametrize(
    "transform", [RandomShift(3), RandomAffine(20.0), Compose(RandomShift(1), RandomAffine())]
)
def test_transforms_handle_colour_batches_of_any_size(transform: BatchTransform) -> None:
    images = torch.rand(6, 3, 32, 32)
    out = transform(images, torch.Generator().manual_seed(0))
    assert out.shape == (6, 3, 32, 32) and out.dtype == torch.float32
    # One geometry per image, shared by its channels: equal channels stay equal.
    grey = images[:, :1].expand(6, 3, 32, 32).contiguous()
    moved = transform(grey, torch.Generator().manual_seed(0))
    assert torch.equal(moved[:, 0], moved[:, 1]) and torch.equal(moved[:, 0], moved[:, 2])
    wide = transform(torch.rand(2, 1, 20, 36), torch.Generator().manual_seed(1))
    assert wide.shape == (2, 1, 20, 36)


def test_random_affine_without_motion_is_identity() -> None:
    images = torch.rand(4, 1, 28, 28)
    still = RandomAffine(degrees=0.0, translate=(0.0, 0.0), scale=(1.0, 1.0))
    assert torch.allclose(still(images, torch.Generator().manual_seed(0)), images, atol=1e-5)


def test_random_affine_translation_only_moves_the_content() -> None:
    image = torch.zeros(1, 1, 28, 28)
    image[0, 0, 10:18, 10:18] = 1.0
    moved = RandomAffine(degrees=0.0, translate=(0.2, 0.2), scale=(1.0, 1.0))
    out = moved(image.expand(16, 1, 28, 28).contiguous(), torch.Generator().manual_seed(3))
    # Mass is kept (the square stays inside) while positions differ between images.
    assert torch.allclose(out.sum(dim=(1, 2, 3)), torch.full((16,), 64.0), atol=1e-3)
    centers = (out[:, 0].sum(1) * torch.arange(28.0)).sum(1) / out[:, 0].sum((1, 2))
    assert centers.unique().numel() > 1


@pytest.mark.parametrize(("h", "w"), [(41, 81), (81, 41), (41, 41)])
def test_random_affine_rotates_in_pixels_on_non_square_images(h: int, w: int) -> None:
    image = torch.zeros(1, 1, h, w)
    cy, cx = h // 2, w // 2
    image[0, 0, cy + 10 - 1 : cy + 10 + 2, cx - 1 : cx + 2] = 1.0  # a dot 10 px below centre
    spin = RandomAffine(degrees=90.0, translate=(0.0, 0.0), scale=(1.0, 1.0))
    out = spin(image.expand(32, 1, h, w).contiguous(), torch.Generator().manual_seed(0))[:, 0]
    mass = out.sum((1, 2))
    ys = (out.sum(2) * torch.arange(h, dtype=out.dtype)).sum(1) / mass - cy
    xs = (out.sum(1) * torch.arange(w, dtype=out.dtype)).sum(1) / mass - cx
    assert torch.allclose(torch.hypot(ys, xs), torch.full((32,), 10.0), atol=0.25)
    assert xs.abs().max() > 5, "the angles really vary"


def test_random_affine_fills_with_zero_outside() -> None:
    out = RandomAffine(degrees=45.0, scale=(0.5, 0.5))(torch.ones(4, 1, 28, 28))
    assert out[:, :, 0, 0].eq(0).all() and out.max() <= 1.0 + 1e-6


def test_lambda_makes_global_rng_draws_reproducible_and_leaves_the_global_rng_alone() -> None:
    noisy = Lambda(lambda x: x + torch.rand_like(x))
    images = torch.zeros(2, 1, 3, 3)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = noisy(images, torch.Generator().manual_seed(7))
    b = noisy(images, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), before)


def test_compose_applies_in_order_and_meets_the_protocol() -> None:
    add = Lambda(lambda x: x + 1)
    double = Lambda(lambda x: x * 2)
    images = torch.zeros(1, 1, 2, 2)
    assert Compose(add, double)(images).max() == 2.0
    assert Compose(double, add)(images).max() == 1.0
    assert isinstance(RandomShift(), BatchTransform) and "RandomShift" in repr(
        Compose(RandomShift())
    )


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: RandomShift(-1), "max_shift"),
        (lambda: RandomAffine(degrees=-1.0), "degrees"),
        (lambda: RandomAffine(translate=(1.5, 0.0)), "translate"),
        (lambda: RandomAffine(scale=(1.2, 1.0)), "scale"),
    ],
)
def test_bad_transform_arguments(factory: object, match: str) -> None:
    with pytest.raises(DataConfigError, match=match):
        factory()  # type: ignore[operator]


def test_transforms_need_a_batch() -> None:
    with pytest.raises(DataConfigError, match="N×C×H×W"):
        RandomShift(1)(torch.zeros(28, 28))
    with pytest.raises(DataConfigError, match="float"):
        RandomAffine()(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))
