"""Direct batched forward passes for the layer types that need no ``vmap``.

``vmap(functional_call)`` runs any module, but pays a fixed cost per call (re-parametrising the
module, batching rules, pytree handling) that dominates for the small optimisees of few-shot
learning: on the sine MLP it is most of a MAML meta-iteration. A ``Sequential`` of linear
layers, element-wise activations and ``Flatten`` is instead written here as batched matrix
products over the task axis, with the same numbers (up to summation order) and the same
(double) differentiability.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

ACTIVATIONS = {nn.ReLU: torch.relu, nn.Tanh: torch.tanh, nn.Sigmoid: torch.sigmoid}


def _layers(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]] | None:
    """The leaf layers of nested ``Sequential`` containers with their parameter prefixes."""
    if not isinstance(module, nn.Sequential):
        return None
    out = []
    for name, child in module.named_children():
        if isinstance(child, nn.Sequential):
            inner = _layers(child, f"{prefix}{name}.")
            if inner is None:
                return None
            out += inner
        elif isinstance(child, nn.Linear) or type(child) in ACTIVATIONS or (
                isinstance(child, nn.Flatten)):
            out.append((f"{prefix}{name}.", child))
        else:
            return None
    return out


def _flatten(h: torch.Tensor, layer: nn.Flatten, n_lead: int) -> torch.Tensor:
    """``nn.Flatten`` of each sample, below ``n_lead`` batch axes and the sample axis."""
    start, end = layer.start_dim, layer.end_dim
    start = start + n_lead if start >= 0 else start
    end = end + n_lead if end >= 0 else end
    return h.flatten(start, end)


def batched_sequential(module: nn.Module) -> Callable | None:
    """``f(params, x)`` for ``module`` batched over leading axes, or ``None`` if unsupported.

    ``params`` maps names to tensors of shape ``(*lead, *shape)`` with ``lead = (B,)`` or
    ``(B, P)``; ``x`` has shape ``(B, N, *in_shape)`` and is shared by the ``P`` copies.
    Supported: nested ``nn.Sequential`` of ``nn.Linear``, ``nn.ReLU``/``Tanh``/``Sigmoid`` and
    ``nn.Flatten``; anything else (convolutions, normalisation, custom modules) returns
    ``None`` and the caller falls back to ``vmap``.
    """
    layers = _layers(module)
    if not layers or not any(isinstance(m, nn.Linear) for _, m in layers):
        return None

    def forward(params: dict[str, torch.Tensor], x: torch.Tensor, n_lead: int) -> torch.Tensor:
        h = x if n_lead == 1 else x.unsqueeze(1)
        for prefix, layer in layers:
            if isinstance(layer, nn.Linear):
                w = params[prefix + "weight"]
                b = params.get(prefix + "bias")
                if n_lead == 1 and b is not None and h.dim() == 3:  # (B,N,in)(B,in,out)+(B,1,out)
                    h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
                else:
                    h = torch.matmul(h, w.transpose(-1, -2))
                    if b is not None:
                        h = h + b.unsqueeze(-2)
            elif isinstance(layer, nn.Flatten):
                h = _flatten(h, layer, n_lead)
            else:
                h = ACTIVATIONS[type(layer)](h)
        return h

    return forward
