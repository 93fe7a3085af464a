"""Multi-layer perceptrons."""

from __future__ import annotations

from torch import nn


def mlp(sizes: list[int] | tuple[int, ...], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """``sizes = (in, h1, ..., out)``: linear layers with ``activation`` between them."""
    if len(sizes) < 2:
        raise ValueError("an MLP needs at least an input and an output size")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)
