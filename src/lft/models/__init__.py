"""Functional models: an ``nn.Module`` used as a pure function of a flat parameter vector.

Optimisees are handled as flat vectors of shape ``(..., D)`` so that one coordinate-wise rule
serves models of any size and a batch of congruous tasks is a single ``(B, D)`` tensor.
"""

from lft.models.conv4 import conv4, image_mlp
from lft.models.functional import FlatModel
from lft.models.mlp import mlp

__all__ = ["FlatModel", "mlp", "conv4", "image_mlp"]
