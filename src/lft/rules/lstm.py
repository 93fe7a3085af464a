"""The paper's fine-tuner ``m_phi``: a coordinate-wise LSTM (Andrychowicz et al. 2016).

One small LSTM is shared by every coordinate of every optimisee, so the same ``phi`` fine-tunes
optimisees of any size: this is what lets incongruous tasks be meta-learned together.
"""

from __future__ import annotations

import torch
from torch import nn

from lft.rules.base import State, UpdateRule
from lft.rules.features import compute_features, feature_state, feature_width


class CoordinateLSTM(UpdateRule):
    """Coordinate-wise LSTM update rule.

    Args:
        hidden: units per layer.
        layers: stacked LSTM layers.
        features: input features per coordinate (see :mod:`lft.rules.features`).
        p: the log/sign preprocessing constant (paper: 10).
        output_scale: the head's output is multiplied by this.
        bounded: pass the head through ``tanh`` so an update never exceeds ``output_scale``
            per coordinate (RNNprop); keeps early meta-training from exploding.
        bias: use biases in the LSTM gates and head (ZO-L2L uses none).
        head_init: the head's default init is multiplied by this (ZO-L2L: 0.1).
        raw_scale: multiplier of the ``raw`` feature.
    """

    kind = "lstm"

    def __init__(self, hidden: int = 10, layers: int = 1, features: tuple[str, ...] = ("logsign",),
                 p: float = 10.0, output_scale: float = 0.1, bounded: bool = True,
                 bias: bool = False, head_init: float = 0.1, raw_scale: float = 1.0):
        super().__init__()
        if hidden < 1 or layers < 1:
            raise ValueError("CoordinateLSTM needs hidden >= 1 and layers >= 1")
        self.hidden, self.layers = int(hidden), int(layers)
        self.features = tuple(features)
        self.p, self.output_scale, self.bounded = float(p), float(output_scale), bool(bounded)
        self.use_bias, self.head_init = bool(bias), float(head_init)
        self.raw_scale = float(raw_scale)
        n_in = feature_width(self.features)
        self.cells = nn.ModuleList(
            nn.Linear((n_in if i == 0 else hidden) + hidden, 4 * hidden, bias=bias)
            for i in range(layers)
        )
        if bias:
            for cell in self.cells:  # forget-gate bias 1: remember by default
                with torch.no_grad():
                    cell.bias[hidden:2 * hidden].fill_(1.0)
        self.head = nn.Linear(hidden, 1, bias=bias)
        with torch.no_grad():
            self.head.weight.mul_(head_init)
            if bias:
                self.head.bias.zero_()

    def config(self) -> dict:
        return {"type": self.kind, "hidden": self.hidden, "layers": self.layers,
                "features": list(self.features), "p": self.p,
                "output_scale": self.output_scale, "bounded": self.bounded,
                "bias": self.use_bias, "head_init": self.head_init, "raw_scale": self.raw_scale}

    def init(self, theta: torch.Tensor, roles: torch.Tensor | None = None) -> State:
        z = theta.new_zeros(*theta.shape, self.hidden)
        hc = tuple(z.clone() for _ in range(2 * self.layers))
        return hc + feature_state(self.features, theta, roles)

    def update(self, grad: torch.Tensor, state: State,
               theta: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        n_hc = 2 * self.layers
        x, fstate = compute_features(self.features, grad, tuple(state[n_hc:]), p=self.p,
                                     raw_scale=self.raw_scale, theta=theta)
        shape = grad.shape
        x = x.reshape(-1, x.shape[-1])
        new_hc = []
        for i, cell in enumerate(self.cells):
            h = state[2 * i].reshape(-1, self.hidden)
            c = state[2 * i + 1].reshape(-1, self.hidden)
            gates = cell(torch.cat([x, h], dim=1))
            ig, fg, gg, og = gates.chunk(4, dim=1)
            c = torch.sigmoid(fg) * c + torch.sigmoid(ig) * torch.tanh(gg)
            h = torch.sigmoid(og) * torch.tanh(c)
            new_hc += [h.reshape(*shape, self.hidden), c.reshape(*shape, self.hidden)]
            x = h
        out = self.head(x).reshape(shape)
        if self.bounded:
            out = torch.tanh(out)
        return out * self.output_scale, tuple(new_hc) + tuple(fstate)

    def extra_repr(self) -> str:
        return (f"hidden={self.hidden}, layers={self.layers}, features={self.features}, "
                f"output_scale={self.output_scale}, bounded={self.bounded}")

