"""Model nodes (each a ``ModelNode``): ``MLPNode``, ``EncoderNode``, ``TinyCNNNode``,
``ConvAutoencoderNode``."""

from legoml.nn.models.autoencoder import ConvAutoencoder, ConvAutoencoderNode
from legoml.nn.models.encoder import EncoderNode
from legoml.nn.models.mlp import MLPNode
from legoml.nn.models.tinycnn import TinyCNNNode
from legoml.nn.node import ModelNode

__all__ = [
    "ConvAutoencoder",
    "ConvAutoencoderNode",
    "EncoderNode",
    "MLPNode",
    "ModelNode",
    "TinyCNNNode",
]
