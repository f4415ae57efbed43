"""Blocks and models build the modules their configs describe; summary reports them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import legoml.nn as L
from legoml.nn import ConfigError, ConvAutoencoderNode, Node
from legoml.nn.blocks import (
    AdaptiveAvgPool2dNode,
    AdaptiveMaxPool2dNode,
    AvgPool2dNode,
    BatchNorm1dNode,
    BatchNorm2dNode,
    DropoutNode,
    FlattenNode,
    GELUNode,
    GlobalAvgPoolNode,
    GroupNormNode,
    LayerNormNode,
    LeakyReLUNode,
    MaxPool2dNode,
    ResidualBlock,
    SigmoidNode,
    SiLUNode,
    TanhNode,
)
from legoml.nn.summary import count_parameters, has_lazy


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("batch", [1, 5])
def test_tiny_cnn_maps_mnist_images_to_ten_logits(batch: int) -> None:
    model = L.TinyCNNNode().build()
    assert not has_lazy(model)  # ready for an optimizer straight away
    out = model(torch.randn(batch, 1, 28, 28))
    assert out.shape == (batch, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    # conv 1->32, conv 32->64, fc 64*7*7->128, fc 128->10
    assert _params(model) == (9 * 32 + 32) + (9 * 32 * 64 + 64) + (3136 * 128 + 128) + 1290


def test_tiny_cnn_options() -> None:
    node = L.TinyCNNNode(
        in_channels=3,
        num_classes=5,
        channels=(8, 16, 32),
        batch_norm=True,
        pool="avg",
        activation=GELUNode(),
        hidden=(),
        dropout=0.5,
        conv_dropout=0.1,
        input_size=(32, 32),
    )
    model = node.build()
    kinds = {type(m) for m in model.modules()}
    assert {nn.BatchNorm2d, nn.AvgPool2d, nn.GELU, nn.Dropout2d} <= kinds
    assert nn.MaxPool2d not in kinds and nn.ReLU not in kinds
    model.eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    assert node.encoder().output_channels(3) == 32
    assert node.head() == L.MLPNode(out_features=5, hidden=(), activation=GELUNode(),
                                    dropout=0.5)  # fmt: skip


def test_tiny_cnn_without_input_size_stays_lazy_until_the_first_batch() -> None:
    model = L.TinyCNNNode(input_size=None).build()
    assert has_lazy(model)
    assert model(torch.randn(2, 1, 20, 20)).shape == (2, 10)
    assert not has_lazy(model)


def test_tiny_cnn_too_deep_for_its_input_is_a_clear_build_error() -> None:
    with pytest.raises(L.BuildError, match=r"a \(28, 28\) input does not fit 6 pooled conv"):
        L.TinyCNNNode(channels=(4,) * 6).build()


def test_same_config_and_seed_give_the_same_weights() -> None:
    torch.manual_seed(3)
    a = L.TinyCNNNode().build()
    torch.manual_seed(3)
    b = L.TinyCNNNode.from_json(L.TinyCNNNode().to_json()).build()
    for (na, ta), (nb, tb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert na == nb and torch.equal(ta, tb)


def test_encoder_downsamples_and_chains_channels() -> None:
    encoder = L.EncoderNode()
    assert encoder.build()(torch.randn(2, 1, 28, 28)).shape == (2, 64, 7, 7)
    stacked = L.EncoderNode.from_channels((4, 8, 16), in_channels=3, norm=BatchNorm2dNode())
    module = stacked.build()
    assert module(torch.randn(2, 3, 32, 32)).shape == (2, 16, 4, 4)
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(3, 4), (4, 8), (8, 16)]
    assert all(c.bias is None for c in convs)  # a norm follows, so no bias


def test_encoder_mixes_conv_and_residual_stages() -> None:
    encoder = L.EncoderNode(
        in_channels=1,
        blocks=[
            L.ConvBlockNode(out_channels=8),
            L.ResidualBlockNode(out_channels=8),
            L.ResidualBlockNode(out_channels=16, stride=2),
            L.EncoderNode(in_channels=None, blocks=[L.ConvBlockNode(out_channels=4)]),
        ],
    )
    assert encoder.output_channels(1) == 4
    assert encoder.build()(torch.randn(2, 1, 28, 28)).shape == (2, 4, 14, 14)


def test_lazy_encoder_takes_any_channel_count() -> None:
    module = L.EncoderNode(in_channels=None).build()
    assert has_lazy(module)
    assert module(torch.randn(2, 5, 16, 16)).shape == (2, 64, 4, 4)


def test_mlp_shapes() -> None:
    mlp = L.MLPNode(in_features=12, hidden=(16, 8), out_features=3).build()
    assert mlp(torch.randn(4, 3, 4)).shape == (4, 3)  # flattened first
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(12, 16), (16, 8), (8, 3)]
    lazy = L.MLPNode(hidden=(), out_features=2, flatten=False).build()
    assert lazy(torch.randn(3, 7)).shape == (3, 2)
    normed = L.MLPNode(in_features=4, hidden=(6,), norm=LayerNormNode(), dropout=0.2).build()
    kinds = [type(m) for m in normed.modules()]
    assert nn.LayerNorm in kinds and nn.Dropout in kinds
    assert normed(torch.randn(2, 4)).shape == (2, 10)


def test_linear_block_layers() -> None:
    block = L.LinearBlockNode(out_features=6, in_features=3, norm=BatchNorm1dNode()).build()
    assert list(dict(block.named_children())) == ["linear", "norm", "act"]
    assert block.linear.bias is None  # type: ignore[union-attr]
    plain = L.LinearBlockNode(out_features=2, activation=None).build()
    assert list(dict(plain.named_children())) == ["linear"]


def test_conv_block_layers_and_padding() -> None:
    node = L.ConvBlockNode(
        out_channels=6, in_channels=2, kernel_size=5, pool=MaxPool2dNode(), dropout=0.3
    )
    block = node.build()
    assert list(dict(block.named_children())) == ["conv", "act", "pool", "drop"]
    assert block(torch.randn(2, 2, 10, 10)).shape == (2, 6, 5, 5)
    strided = L.ConvBlockNode(out_channels=3, in_channels=1, stride=2, padding=0).build()
    assert strided(torch.randn(1, 1, 9, 9)).shape == (1, 3, 4, 4)
    with pytest.raises(L.ConfigError, match="^in_channels: is 2 but the layer before it gives 3"):
        node.build(3)


def test_residual_block_adds_the_shortcut() -> None:
    torch.manual_seed(0)
    module = L.ResidualBlockNode(out_channels=4, norm=None).build()
    assert isinstance(module, ResidualBlock) and isinstance(module.shortcut, nn.Identity)
    x = torch.randn(2, 4, 8, 8)
    assert torch.allclose(module(x), torch.relu(module.body(x) + x))
    projected = L.ResidualBlockNode(out_channels=8, in_channels=4, stride=2).build()
    assert isinstance(projected, ResidualBlock)
    assert not isinstance(projected.shortcut, nn.Identity)
    assert projected(x).shape == (2, 8, 4, 4)
    with pytest.raises(L.ConfigError, match="^kernel_size: must be odd"):
        L.ResidualBlockNode(kernel_size=4)


def test_norm_nodes() -> None:
    assert isinstance(BatchNorm2dNode().build(), nn.LazyBatchNorm2d)
    assert isinstance(BatchNorm2dNode(num_features=3).build(), nn.BatchNorm2d)
    bn = BatchNorm1dNode(momentum=0.5, affine=False).build(7)
    assert isinstance(bn, nn.BatchNorm1d) and bn.num_features == 7 and bn.weight is None
    group = GroupNormNode(num_groups=2).build(6)
    assert isinstance(group, nn.GroupNorm) and group.num_groups == 2
    with pytest.raises(L.BuildError, match="LayerNormNode needs normalized_shape"):
        LayerNormNode().build()
    with pytest.raises(L.BuildError, match="GroupNormNode needs num_channels"):
        GroupNormNode().build()
    with pytest.raises(L.ConfigError, match="^num_groups: 4 groups do not divide 6"):
        GroupNormNode(num_groups=4).build(6)
    with pytest.raises(L.ConfigError, match="^num_features: is 3 but"):
        BatchNorm2dNode(num_features=3).build(4)
    with pytest.raises(L.ConfigError, match="^norm: LayerNormNode does not fit conv"):
        L.ConvBlockNode(norm=LayerNormNode())
    with pytest.raises(L.ConfigError, match="^norm: BatchNorm2dNode expects"):
        L.LinearBlockNode(norm=BatchNorm2dNode())


@pytest.mark.parametrize(
    ("block", "width_field", "wrong_kind"),
    [
        (L.ConvBlockNode, "out_channels", LayerNormNode()),
        (L.ResidualBlockNode, "out_channels", BatchNorm1dNode()),
        (L.LinearBlockNode, "out_features", BatchNorm2dNode()),
    ],
)
def test_blocks_refuse_a_misfit_norm_alike(
    block: type[Node], width_field: str, wrong_kind: Node
) -> None:
    """Every block with a ``norm`` slot runs the same check: size and input kind, under ``norm``."""
    with pytest.raises(ConfigError, match="^norm.num_groups: 3 groups do not divide 8"):
        block(**{width_field: 8, "norm": GroupNormNode(num_groups=3)})
    with pytest.raises(ConfigError, match="^norm.num_features: is 4 but the layer before it gives 8"):
        block(**{width_field: 8, "norm": BatchNorm2dNode(num_features=4)})
    with pytest.raises(ConfigError, match=f"^norm: {type(wrong_kind).__name__} "):
        block(**{width_field: 8, "norm": wrong_kind})


def test_pool_and_activation_nodes() -> None:
    x = torch.randn(2, 3, 8, 8)
    assert MaxPool2dNode(kernel_size=2).build()(x).shape == (2, 3, 4, 4)
    assert AvgPool2dNode(kernel_size=3, stride=1, padding=1).build()(x).shape == (2, 3, 8, 8)
    assert AdaptiveAvgPool2dNode(output_size=(2, 3)).build()(x).shape == (2, 3, 2, 3)
    assert AdaptiveMaxPool2dNode().build()(x).shape == (2, 3, 1, 1)
    assert GlobalAvgPoolNode().build()(x).shape == (2, 3)
    assert GlobalAvgPoolNode(flatten=False).build()(x).shape == (2, 3, 1, 1)
    expected = {
        L.ReluNode(): nn.ReLU,
        GELUNode(approximate="tanh"): nn.GELU,
        SiLUNode(): nn.SiLU,
        LeakyReLUNode(negative_slope=0.2): nn.LeakyReLU,
        TanhNode(): nn.Tanh,
        SigmoidNode(): nn.Sigmoid,
        L.NoopNode(): nn.Identity,
    }
    for node, kind in expected.items():
        assert type(node.build()) is kind
    assert torch.equal(L.NoopNode().build()(x), x)
    leaky = LeakyReLUNode(negative_slope=0.2).build()
    assert torch.allclose(leaky(torch.tensor([-1.0])), torch.tensor([-0.2]))


def test_sequential_node() -> None:
    node = L.SequentialNode(
        layers=[FlattenNode(), L.LinearBlockNode(out_features=4), DropoutNode(p=0.1)]
    )
    module = node.build()
    assert isinstance(module, nn.Sequential) and len(module) == 3
    assert module(torch.randn(2, 1, 3, 3)).shape == (2, 4)
    assert L.SequentialNode().build()(x := torch.randn(2)) is x


def test_summary_counts_parameters_and_shapes() -> None:
    model = L.TinyCNNNode(input_size=None, batch_norm=True).build()
    model.train()
    summary = L.summarize(model, (2, 1, 28, 28))
    assert model.training  # mode restored
    assert not has_lazy(model)  # lazy head materialized
    assert summary.total_params == sum(p.numel() for p in model.parameters())
    assert summary.trainable_params == summary.total_params
    assert summary.output_shape == (2, 10)
    by_name = {layer.name: layer for layer in summary.layers}
    assert by_name["features.block0.conv"].output_shape == (2, 32, 28, 28)
    assert by_name["features.block1.pool"].output_shape == (2, 64, 7, 7)
    assert by_name["classifier.flatten"].output_shape == (2, 3136)
    assert by_name["classifier.fc0.linear"].num_params == 3136 * 128 + 128
    bn = model.features.block0.norm  # type: ignore[union-attr]
    assert int(bn.num_batches_tracked) == 0  # the dummy pass ran in eval mode
    text = str(summary)
    assert "features.block0.conv" in text and "Conv2d" in text and "[2, 32, 28, 28]" in text
    assert f"total params: {summary.total_params:,}" in text


def test_summary_counts_frozen_and_shared_parameters_correctly() -> None:
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.Linear(4, 2))
    for p in model[3].parameters():
        p.requires_grad_(False)
    summary = L.summarize(model, (1, 4))
    assert summary.total_params == 20 + 10
    assert summary.trainable_params == 20
    assert count_parameters(model, trainable_only=True) == 20


def test_materialize_leaves_statistics_and_mode_alone() -> None:
    model = nn.Sequential(nn.LazyLinear(3), nn.BatchNorm1d(3))
    model.train()
    assert L.materialize(model, (2, 5)) is model
    assert model.training and not has_lazy(model)
    assert int(model[1].num_batches_tracked) == 0
    assert torch.equal(model[1].running_mean, torch.zeros(3))


def test_tinycnn_stem_stride_and_pool_first_shapes_and_order() -> None:
    node = L.TinyCNNNode(channels=(16, 32, 64), batch_norm=True, stem_stride=2, pool_first=True)
    model = node.build()
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    first, second = model.features[0], model.features[1]
    assert first.conv.stride == (2, 2) and not hasattr(first, "pool")
    assert list(second._modules) == ["conv", "pool", "norm", "act"]
    assert sum(p.numel() for p in model.parameters()) == 98_554


# -- ConvAutoencoderNode ---------------------------------------------------------------


def test_conv_autoencoder_reconstructs_the_input_shape_and_returns_its_code() -> None:
    node = ConvAutoencoderNode(in_channels=3, input_size=(32, 16), channels=(8, 16), latent=5)
    with torch.no_grad():
        reconstruction, code = node.build()(torch.rand(4, 3, 32, 16))
    assert reconstruction.shape == (4, 3, 32, 16)
    assert code.shape == (4, 5)
    assert 0.0 <= float(reconstruction.min()) and float(reconstruction.max()) <= 1.0  # sigmoid


def test_conv_autoencoder_without_sigmoid_or_norm_round_trips() -> None:
    node = ConvAutoencoderNode(channels=(4,), batch_norm=False, sigmoid=False)
    model = node.build()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in model.modules())
    assert Node.from_dict(node.to_dict()) == node


def test_conv_autoencoder_refuses_a_size_its_stages_cannot_halve() -> None:
    with pytest.raises(ConfigError, match=r"input_size.*not divisible by 2\*\*3=8"):
        ConvAutoencoderNode(input_size=(28, 28), channels=(8, 8, 8))


def test_conv_autoencoder_learns_a_batch() -> None:
    torch.manual_seed(0)
    model = ConvAutoencoderNode(channels=(8, 16), latent=16).build()
    images = torch.rand(2, 1, 28, 28)[torch.arange(16) % 2]  # two patterns to learn
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        reconstruction, _ = model(images)
        loss = torch.nn.functional.mse_loss(reconstruction, images)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
