"""BatchLoader: coverage per epoch, sharding, determinism, resume, shapes and bad input."""

from __future__ import annotations

import io
import itertools

import pytest
import torch
from torch import Tensor

from legoml.data import (
    MNIST,
    BatchLoader,
    BatchTransform,
    Compose,
    DataConfigError,
    RandomAffine,
    RandomShift,
    Split,
    normalize_images,
)

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def old_default(images: Tensor) -> Tensor:
    """What BatchLoader yielded before its defaults became (0, 1): MNIST statistics."""
    if images.ndim == 3:
        images = images.unsqueeze(1)
    return images.to(torch.float32).mul_(1.0 / (255.0 * MNIST_STD)).sub_(MNIST_MEAN / MNIST_STD)


def ids_split(n: int) -> Split:
    """Labels are the example ids, so every yielded batch says which examples it holds."""
    images = (torch.arange(n) % 256).to(torch.uint8)[:, None, None].expand(n, 28, 28)
    return Split(images=images.contiguous(), labels=torch.arange(n))


def run_epoch(loader: BatchLoader) -> list[tuple[Tensor, Tensor]]:
    return list(loader)


def ranks(n: int, world: int, **kwargs: object) -> list[BatchLoader]:
    split = ids_split(n)
    return [
        BatchLoader(split.images, split.labels, rank=r, world_size=world, **kwargs)  # type: ignore[arg-type]
        for r in range(world)
    ]


@pytest.mark.parametrize(("n", "batch_size"), [(10, 1), (10, 4), (37, 7), (128, 64), (5, 8)])
@pytest.mark.parametrize("shuffle", [True, False])
def test_every_example_once_per_epoch(n: int, batch_size: int, shuffle: bool) -> None:
    split = ids_split(n)
    loader = BatchLoader(split.images, split.labels, batch_size, shuffle=shuffle, seed=3)
    for _ in range(3):
        seen = torch.cat([y for _, y in loader])
        assert sorted(seen.tolist()) == list(range(n))
        assert len(loader) == -(-n // batch_size)


@pytest.mark.parametrize(("n", "batch_size"), [(10, 4), (37, 7), (64, 8), (5, 8)])
def test_drop_last_yields_full_batches_without_repeats(n: int, batch_size: int) -> None:
    split = ids_split(n)
    if n < batch_size:
        with pytest.raises(DataConfigError, match="yields no batch"):
            BatchLoader(split.images, split.labels, batch_size, drop_last=True)
        return
    loader = BatchLoader(split.images, split.labels, batch_size, drop_last=True)
    batches = run_epoch(loader)
    assert len(batches) == len(loader) == n // batch_size
    seen = torch.cat([y for _, y in batches]).tolist()
    assert all(len(y) == batch_size for _, y in batches)
    assert len(set(seen)) == len(seen) == batch_size * (n // batch_size)


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize(("n", "batch_size"), [(10, 4), (37, 5), (60, 6), (2, 1), (7, 16)])
@pytest.mark.parametrize("shuffle", [True, False])
def test_sharded_union_covers_each_example_once(
    world: int, n: int, batch_size: int, shuffle: bool
) -> None:
    loaders = ranks(n, world, batch_size=batch_size, shuffle=shuffle, seed=5)
    assert len({len(loader) for loader in loaders}) == 1, "equal batch counts per rank"
    for epoch in range(2):
        real: list[int] = []
        for loader in loaders:
            loader.set_epoch(epoch)
            padded = 0
            for index, (_, labels) in enumerate(loader):
                mask = loader.valid_mask()
                assert torch.equal(mask, loader.valid_mask(index))
                real += labels[mask].tolist()
                padded += int((~mask).sum())
            assert padded == loader.num_padded <= 1
        assert sorted(real) == list(range(n))
    # The same number of samples on every rank, so the last batches match in size too.
    sizes = [[len(y) for _, y in loader] for loader in loaders]
    assert all(s == sizes[0] for s in sizes)


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize(("n", "batch_size"), [(10, 2), (37, 5), (60, 6)])
def test_sharded_drop_last_has_no_repeats_and_equal_counts(
    world: int, n: int, batch_size: int
) -> None:
    loaders = ranks(n, world, batch_size=batch_size, drop_last=True, seed=1)
    assert len({len(loader) for loader in loaders}) == 1
    seen = [y for loader in loaders for _, y in loader]
    flat = torch.cat(seen).tolist()
    assert len(flat) == len(set(flat)) == world * batch_size * ((n // world) // batch_size)
    assert all(len(y) == batch_size for y in seen)
    assert all(loader.num_padded == 0 for loader in loaders)


@pytest.mark.parametrize("world", [2, 3])
def test_uneven_shards_cover_exactly_without_padding(world: int) -> None:
    loaders = ranks(37, world, batch_size=4, even_shards=False)
    flat = sorted(torch.cat([y for loader in loaders for _, y in loader]).tolist())
    assert flat == list(range(37))
    lengths = [len(loader) for loader in loaders]
    assert max(lengths) - min(lengths) <= 1
    assert all(loader.num_padded == 0 for loader in loaders)


def test_order_is_reproducible_and_changes_across_epochs_and_seeds() -> None:
    split = ids_split(50)

    def order(seed: int, epoch: int) -> list[int]:
        loader = BatchLoader(split.images, split.labels, 8, seed=seed)
        loader.set_epoch(epoch)
        return torch.cat([y for _, y in loader]).tolist()

    assert order(0, 0) == order(0, 0)
    assert order(0, 3) == order(0, 3)
    assert order(0, 0) != order(0, 1)
    assert order(0, 0) != order(1, 0)
    assert order(7, 2) != sorted(order(7, 2))


def test_epochs_advance_after_a_full_pass_without_set_epoch() -> None:
    split = ids_split(20)
    auto = BatchLoader(split.images, split.labels, 6, seed=2)
    passes = [torch.cat([y for _, y in auto]) for _ in range(3)]
    assert auto.epoch == 3 and auto.position == 0
    for epoch, expected in enumerate(passes):
        explicit = BatchLoader(split.images, split.labels, 6, seed=2)
        explicit.set_epoch(epoch)
        assert torch.equal(torch.cat([y for _, y in explicit]), expected)


def test_set_epoch_restarts_a_partly_consumed_epoch() -> None:
    split = ids_split(20)
    loader = BatchLoader(split.images, split.labels, 6, seed=2)
    full = torch.cat([y for _, y in loader])
    loader.set_epoch(0)
    next(iter(loader))
    assert loader.position == 1
    loader.set_epoch(0)
    assert torch.equal(torch.cat([y for _, y in loader]), full)


def test_stopping_exactly_at_the_end_moves_to_the_next_epoch() -> None:
    split = ids_split(12)
    loader = BatchLoader(split.images, split.labels, 4, seed=0)
    iterator = iter(loader)
    for _ in range(len(loader)):
        next(iterator)
    assert (loader.epoch, loader.position) == (0, 3)
    next(iter(loader))
    assert (loader.epoch, loader.position) == (1, 1)


TRANSFORMS = [None, RandomShift(2), RandomAffine(15.0), Compose(RandomShift(1), RandomAffine())]


@pytest.mark.parametrize("transform", TRANSFORMS, ids=repr)
@pytest.mark.parametrize(("rank", "world"), [(0, 1), (1, 3)])
def test_resume_mid_epoch_yields_exactly_the_remaining_batches(
    transform: BatchTransform | None, rank: int, world: int
) -> None:
    split = Split(torch.randint(0, 256, (45, 28, 28), dtype=torch.uint8), torch.arange(45))

    def make() -> BatchLoader:
        return BatchLoader(
            split.images,
            split.labels,
            4,
            seed=9,
            transform=transform,
            rank=rank,
            world_size=world,
        )

    reference = make()
    reference.set_epoch(2)
    expected = run_epoch(reference)
    for consumed in range(len(expected) + 1):
        first = make()
        first.set_epoch(2)
        for _ in itertools.islice(first, consumed):
            pass
        buffer = io.BytesIO()
        torch.save(first.state_dict(), buffer)
        buffer.seek(0)
        state = torch.load(buffer, weights_only=True)

        resumed = make()
        resumed.load_state_dict(state)
        resumed.set_epoch(2)  # what the Engine does at the start of the resumed epoch
        rest = run_epoch(resumed)
        if consumed == len(expected):
            # Epoch 2 had been fully consumed: the next pass is epoch 3.
            reference.set_epoch(3)
            expected_next = run_epoch(reference)
            assert all(
                torch.equal(x, ex) for (x, _), (ex, _) in zip(rest, expected_next, strict=True)
            )
            continue
        assert len(rest) == len(expected) - consumed
        for (x, y), (ex, ey) in zip(rest, expected[consumed:], strict=True):
            assert torch.equal(x, ex) and torch.equal(y, ey)
        # legoml-core's order: set_epoch first, then load_state_dict.
        other = make()
        other.set_epoch(2)
        other.load_state_dict(state)
        assert [y.tolist() for _, y in other] == [y.tolist() for _, y in rest]


def test_resume_without_set_epoch_and_then_continue() -> None:
    split = ids_split(30)
    reference = BatchLoader(split.images, split.labels, 4, seed=4)
    epochs = [torch.cat([y for _, y in reference]) for _ in range(2)]
    first = BatchLoader(split.images, split.labels, 4, seed=4)
    it = iter(first)
    head = [next(it)[1] for _ in range(3)]
    resumed = BatchLoader(split.images, split.labels, 4, seed=4)
    resumed.load_state_dict(first.state_dict())
    tail = [y for _, y in resumed]
    assert torch.equal(torch.cat(head + tail), epochs[0])
    assert torch.equal(torch.cat([y for _, y in resumed]), epochs[1])


def test_state_that_does_not_fit_is_refused() -> None:
    split = ids_split(30)
    loader = BatchLoader(split.images, split.labels, 4, seed=4)
    state = loader.state_dict()
    for key, value in [("batch_size", 8), ("seed", 5), ("num_examples", 31), ("world_size", 2)]:
        with pytest.raises(DataConfigError, match=key):
            loader.load_state_dict({**state, key: value})
    with pytest.raises(DataConfigError, match="position 99 exceeds"):
        loader.load_state_dict({**state, "position": 99})
    with pytest.raises(DataConfigError, match="'epoch'"):
        loader.load_state_dict({"position": 0})
    with pytest.raises(DataConfigError, match="epoch >= 0"):
        loader.set_epoch(-1)


def test_batches_are_normalized_float_images_with_int64_labels() -> None:
    images = torch.tensor([0, 255, 128], dtype=torch.uint8)[:, None, None].expand(3, 28, 28)
    labels = torch.tensor([1, 2, 3], dtype=torch.int32)
    loader = BatchLoader(
        images.contiguous(), labels, 3, shuffle=False, device="cpu", mean=0.1307, std=0.3081
    )
    x, y = next(iter(loader))
    assert x.shape == (3, 1, 28, 28) and x.dtype == torch.float32 and x.device.type == "cpu"
    assert y.dtype == torch.int64 and y.tolist() == [1, 2, 3]
    expected = (torch.tensor([0.0, 1.0, 128 / 255]) - 0.1307) / 0.3081
    assert torch.allclose(x[:, 0, 0, 0], expected, atol=1e-6)


def test_default_normalization_only_scales_to_unit_range() -> None:
    images = torch.tensor([0, 255, 51], dtype=torch.uint8)[:, None, None].expand(3, 5, 7)
    loader = BatchLoader(images.contiguous(), torch.arange(3), 3, shuffle=False)
    x, _ = next(iter(loader))
    assert x.shape == (3, 1, 5, 7) and x[:, 0, 0, 0].tolist()[:2] == [0.0, 1.0]
    assert torch.allclose(x[:, 0, 0, 0], torch.tensor([0.0, 1.0, 0.2]), atol=1e-7)
    assert (loader.mean, loader.std) == ((0.0,), (1.0,))


@pytest.mark.parametrize("transform", [None, RandomShift(2), RandomAffine(10.0)], ids=repr)
def test_from_split_with_mnist_facts_is_bit_identical_to_the_old_default(
    transform: BatchTransform | None,
) -> None:
    images = torch.randint(0, 256, (40, 28, 28), dtype=torch.uint8)
    split = Split(images, torch.arange(40), mean=MNIST.mean, std=MNIST.std)
    loader = BatchLoader.from_split(split, 16, seed=3, transform=transform)
    unit = BatchLoader(images, torch.arange(40), 16, seed=3, transform=transform)
    for (x, y), (u, _) in zip(loader, unit, strict=True):
        if transform is None:
            assert torch.equal(x, old_default(images[y]))
        else:  # the old augmented path: float pixels in [0, 1], then (x - mean) / std
            assert torch.equal(x, torch.sub(u, MNIST_MEAN).div_(MNIST_STD))


def test_from_split_uses_the_split_statistics_unless_overridden() -> None:
    images = torch.full((4, 3, 6, 6), 255, dtype=torch.uint8)
    split = Split(images, torch.arange(4), mean=(0.5, 0.0, 1.0), std=(0.5,))
    x, _ = next(iter(BatchLoader.from_split(split, 4)))
    assert x[:, :, 0, 0].tolist() == [[1.0, 2.0, 0.0]] * 4
    x, _ = next(iter(BatchLoader.from_split(split, 4, mean=0.0, std=1.0)))
    assert torch.all(x == 1.0)
    assert BatchLoader.from_split(Split(images, torch.arange(4)), 2).mean == (0.0,)


@pytest.mark.parametrize("transform", [None, RandomShift(1)], ids=repr)
def test_per_channel_normalization_matches_the_scalar_path_channel_by_channel(
    transform: BatchTransform | None,
) -> None:
    images = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.6, 0.7)
    labels = torch.arange(10)
    loader = BatchLoader(images, labels, 4, seed=1, mean=mean, std=std, transform=transform)
    unit = BatchLoader(images, labels, 4, seed=1, transform=transform)
    for (x, y), (u, _) in zip(loader, unit, strict=True):
        assert x.shape == (len(y), 3, 32, 32)
        for c in range(3):
            if transform is None:
                reference = normalize_images(images[y][:, c], mean[c], std[c])[:, 0]
            else:
                reference = torch.sub(u[:, c], mean[c]).div_(std[c])
            assert torch.equal(x[:, c], reference)


def test_equal_channel_statistics_take_the_scalar_path() -> None:
    images = torch.randint(0, 256, (6, 3, 5, 5), dtype=torch.uint8)
    per_channel = BatchLoader(images, torch.arange(6), 6, shuffle=False, mean=[0.4] * 3, std=0.2)
    scalar = BatchLoader(images, torch.arange(6), 6, shuffle=False, mean=0.4, std=(0.2,))
    assert torch.equal(next(iter(per_channel))[0], next(iter(scalar))[0])


def test_matches_torchvision_to_tensor_and_normalize() -> None:
    transforms = pytest.importorskip("torchvision.transforms")
    images = torch.randint(0, 256, (6, 28, 28), dtype=torch.uint8)
    labels = torch.zeros(6, dtype=torch.int64)
    x, _ = next(iter(BatchLoader(images, labels, 6, shuffle=False, mean=0.1307, std=0.3081)))
    pipeline = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
    )
    reference = torch.stack([pipeline(img.numpy()) for img in images])
    assert torch.allclose(x, reference, atol=1e-5)
    rgb = torch.randint(0, 256, (4, 3, 9, 11), dtype=torch.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    x, _ = next(iter(BatchLoader(rgb, labels[:4], 4, shuffle=False, mean=mean, std=std)))
    pipeline = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    reference = torch.stack([pipeline(img.permute(1, 2, 0).numpy()) for img in rgb])
    assert torch.allclose(x, reference, atol=1e-5)


def test_multichannel_images_and_custom_normalization() -> None:
    images = torch.full((4, 3, 8, 8), 255, dtype=torch.uint8)
    loader = BatchLoader(images, torch.zeros(4, dtype=torch.int64), 2, mean=0.0, std=1.0)
    x, _ = next(iter(loader))
    assert x.shape == (2, 3, 8, 8) and torch.all(x == 1.0)


def test_augmented_batches_are_deterministic_and_vary_by_batch_and_epoch() -> None:
    images = torch.randint(0, 256, (16, 28, 28), dtype=torch.uint8)
    split = Split(images, torch.arange(16))

    def batches(epoch: int) -> list[Tensor]:
        loader = BatchLoader(
            split.images, split.labels, 8, shuffle=False, transform=RandomAffine(20.0)
        )
        loader.set_epoch(epoch)
        return [x for x, _ in loader]

    plain = [x for x, _ in BatchLoader(split.images, split.labels, 8, shuffle=False)]
    assert all(torch.equal(a, b) for a, b in zip(batches(0), batches(0), strict=True))
    assert not torch.equal(batches(0)[0], batches(1)[0])
    assert not torch.equal(batches(0)[0], plain[0])


def test_cuda_device_when_available() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    split = ids_split(20)
    loader = BatchLoader(split.images, split.labels, 8, device="cuda", transform=RandomShift(2))
    x, y = next(iter(loader))
    assert x.is_cuda and y.is_cuda and loader.images.is_cuda
    assert loader.images.dtype == torch.uint8
    rgb = torch.randint(0, 256, (9, 3, 32, 32), dtype=torch.uint8)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.6, 0.7)
    for transform in (None, RandomShift(1)):
        on_gpu = BatchLoader(rgb, torch.arange(9), 4, device="cuda", mean=mean, std=std,
                             transform=transform)  # fmt: skip
        on_cpu = BatchLoader(rgb, torch.arange(9), 4, mean=mean, std=std, transform=transform)
        for (a, _), (b, _) in zip(on_gpu, on_cpu, strict=True):
            assert a.is_cuda and torch.allclose(a.cpu(), b, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"images": torch.zeros(4, 28, 28)}, "uint8"),
        ({"images": torch.zeros(4, 28, dtype=torch.uint8)}, "uint8"),
        ({"labels": torch.zeros(3, dtype=torch.int64)}, "4 images but 3 labels"),
        ({"labels": torch.zeros(4)}, "integer"),
        ({"batch_size": 0}, "batch_size"),
        ({"rank": 2, "world_size": 2}, "rank < world_size"),
        ({"world_size": 0}, "rank < world_size"),
        ({"std": 0.0}, "std must be > 0"),
        ({"std": (1.0, -0.5, 1.0), "images": torch.zeros(4, 3, 2, 2, dtype=torch.uint8)}, "std"),
        ({"mean": (0.1, 0.2)}, "mean has 2 values for 1-channel images"),
        (
            {"mean": (0.1, 0.2), "images": torch.zeros(4, 3, 2, 2, dtype=torch.uint8)},
            "pass one value or 3",
        ),
        ({"std": ()}, "std has 0 values"),
        ({"mean": float("nan")}, "finite"),
        ({"mean": "0.5"}, "number or a sequence"),
        ({"std": (1.0, True)}, "numbers only"),
        (
            {
                "images": torch.zeros(0, 28, 28, dtype=torch.uint8),
                "labels": torch.zeros(0, dtype=torch.int64),
            },
            "empty",
        ),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], match: str) -> None:
    arguments: dict[str, object] = {
        "images": torch.zeros(4, 28, 28, dtype=torch.uint8),
        "labels": torch.zeros(4, dtype=torch.int64),
        "batch_size": 2,
    }
    arguments.update(kwargs)
    with pytest.raises(DataConfigError, match=match):
        BatchLoader(**arguments)  # type: ignore[arg-type]


def test_valid_mask_range_is_checked() -> None:
    split = ids_split(10)
    loader = BatchLoader(split.images, split.labels, 4)
    with pytest.raises(DataConfigError, match="out of range"):
        loader.valid_mask()  # nothing yielded yet
    with pytest.raises(DataConfigError, match="out of range"):
        loader.valid_mask(3)


def test_from_split_and_repr() -> None:
    loader = BatchLoader.from_split(ids_split(10), 4, shuffle=False, seed=1)
    assert len(loader) == 3 and loader.num_examples == 10
    assert "batch_size=4" in repr(loader) and "seed=1" in repr(loader)
    assert "mean=(0.0,)" in repr(loader)


def test_any_image_size_and_channel_count() -> None:
    for shape in [(7, 1, 5, 9), (7, 3, 32, 32), (7, 4, 2, 3), (7, 13, 17)]:
        images = torch.randint(0, 256, shape, dtype=torch.uint8)
        loader = BatchLoader(images, torch.arange(7), 3, transform=RandomShift(1))
        batches = list(loader)
        channels = shape[1] if len(shape) == 4 else 1
        assert [tuple(x.shape) for x, _ in batches][0] == (3, channels, *shape[-2:])
        assert sorted(torch.cat([y for _, y in batches]).tolist()) == list(range(7))
