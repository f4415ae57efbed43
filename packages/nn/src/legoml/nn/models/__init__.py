"""Model nodes: ``MLPNode``, ``EncoderNode``, ``TinyCNNNode``."""

from legoml.nn.models.encoder import EncoderNode
from legoml.nn.models.mlp import MLPNode
from legoml.nn.models.tinycnn import TinyCNNNode

__all__ = ["EncoderNode", "MLPNode", "TinyCNNNode"]
