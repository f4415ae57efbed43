"""``ConvAutoencoderNode``: a small convolutional auto-encoder (images -> code -> images)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from torch import Tensor, nn

from legoml.nn._check import Check
from legoml.nn.blocks.activations import ActivationNode, ReluNode
from legoml.nn.errors import ConfigError
from legoml.nn.node import ModelNode
from legoml.nn.types import Positive

__all__ = ["ConvAutoencoder", "ConvAutoencoderNode"]


class ConvAutoencoder(nn.Module):
    """Stride-2 conv encoder to a flat code, transposed-conv decoder back to the image.

    ``forward`` returns ``(reconstruction, code)`` so a step can keep both; ``encode`` and
    ``decode`` are there for users who want only one half.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def encode(self, images: Tensor) -> Tensor:
        code: Tensor = self.encoder(images)
        return code

    def decode(self, code: Tensor) -> Tensor:
        images: Tensor = self.decoder(code)
        return images

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        code = self.encode(images)
        return self.decode(code), code


@dataclass(frozen=True)
class ConvAutoencoderNode(ModelNode):
    """Each entry of ``channels`` is a 3x3 stride-2 conv (halving H and W), then a linear
    layer to a ``latent``-wide code; the decoder mirrors it with 4x4 stride-2 transposed
    convs. ``sigmoid`` squashes the output to [0, 1], matching inputs scaled to [0, 1].

    >>> model = ConvAutoencoderNode().build()
    >>> [t.shape for t in model(torch.zeros(2, 1, 28, 28))]
    [torch.Size([2, 1, 28, 28]), torch.Size([2, 32])]
    """

    in_channels: Positive = 1
    input_size: tuple[Positive, Positive] = (28, 28)
    channels: Annotated[tuple[Positive, ...], Check(min_len=1)] = (32, 64)
    latent: Positive = 32
    activation: ActivationNode = ReluNode()
    batch_norm: bool = True
    sigmoid: bool = True

    def validate(self) -> None:
        factor = 2 ** len(self.channels)
        height, width = self.input_size
        if height % factor or width % factor:
            raise ConfigError(
                f"{self.input_size} is not divisible by 2**{len(self.channels)}={factor} "
                "(each channels entry halves the size); use fewer channels entries",
                "input_size",
            )

    def _code_shape(self) -> tuple[int, int, int]:
        factor = 2 ** len(self.channels)
        return self.channels[-1], self.input_size[0] // factor, self.input_size[1] // factor

    def _stage(self, conv: nn.Module, width: int) -> list[nn.Module]:
        norm: list[nn.Module] = [nn.BatchNorm2d(width)] if self.batch_norm else []
        return [conv, *norm, self.activation.build()]

    def build(self) -> nn.Module:
        encoder: list[nn.Module] = []
        width = self.in_channels
        for out in self.channels:
            conv: nn.Module = nn.Conv2d(
                width, out, 3, stride=2, padding=1, bias=not self.batch_norm
            )
            encoder += self._stage(conv, out)
            width = out
        shape = self._code_shape()
        flat = shape[0] * shape[1] * shape[2]
        encoder += [nn.Flatten(), nn.Linear(flat, self.latent)]
        decoder: list[nn.Module] = [
            nn.Linear(self.latent, flat),
            self.activation.build(),
            nn.Unflatten(1, shape),
        ]
        widths = [*reversed(self.channels[:-1]), self.in_channels]
        for index, out in enumerate(widths):
            last = index == len(widths) - 1
            conv = nn.ConvTranspose2d(
                width, out, 4, stride=2, padding=1, bias=last or not self.batch_norm
            )
            decoder += [conv] if last else self._stage(conv, out)
            width = out
        if self.sigmoid:
            decoder.append(nn.Sigmoid())
        return ConvAutoencoder(nn.Sequential(*encoder), nn.Sequential(*decoder))
