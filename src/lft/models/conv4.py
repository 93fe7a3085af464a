"""The few-shot classifiers of the paper's Table 2."""

from __future__ import annotations

from torch import nn

from lft.models.mlp import mlp


def conv4(in_channels: int = 3, image_size: int = 32, filters: int = 32,
          n_classes: int = 2) -> nn.Sequential:
    """MAML's Conv-4 without BatchNorm: 4 x [3x3 conv, ReLU, 2x2 max-pool], then linear.

    BatchNorm is left out on purpose: under a learned optimiser from a random start its
    running statistics are a well-known source of train/eval mismatch in inner loops.
    """
    layers: list[nn.Module] = []
    size, c = image_size, in_channels
    for _ in range(4):
        layers += [nn.Conv2d(c, filters, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        c, size = filters, size // 2
    if size < 1:
        raise ValueError(f"images of size {image_size} are too small for four 2x2 poolings")
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(filters * size * size, n_classes))


def image_mlp(in_features: int = 784, hidden: tuple[int, ...] = (128, 64),
              n_classes: int = 2) -> nn.Sequential:
    """The MNIST classifier: flatten, then an MLP (784-128-64-2 by default, ReLU)."""
    return nn.Sequential(nn.Flatten(), mlp([in_features, *hidden, n_classes]))
