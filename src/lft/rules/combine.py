"""Combinators: build a new rule from existing ones, optax-style.

``Sum([SGD(0.01), CoordinateLSTM()])`` adds the updates of its parts: a learned correction on
top of a hand-designed step. With the LSTM head initialised at zero the sum starts as exactly
the hand-designed rule, so meta-training can only move it where the meta-loss improves; this
is how ``lft+init`` starts from MAML's rule *and* initialisation.
"""

from __future__ import annotations

import torch
from torch import nn

from lft.rules.base import State, UpdateRule


class Sum(UpdateRule):
    """``delta = sum_i delta_i``; the state is the tuple of the parts' states."""

    kind = "sum"

    def __init__(self, rules: list):
        super().__init__()
        from lft.rules import build  # the registry imports this module

        if not rules:
            raise ValueError("Sum needs at least one rule")
        self.parts = nn.ModuleList(r if isinstance(r, UpdateRule) else build(r) for r in rules)

    def config(self) -> dict:
        return {"type": self.kind, "rules": [r.config() for r in self.parts]}

    def init(self, theta: torch.Tensor, roles: torch.Tensor | None = None) -> State:
        return tuple(r.init(theta, roles) for r in self.parts)

    def update(self, grad: torch.Tensor, state: State,
               theta: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        total, new_state = None, []
        for rule, s in zip(self.parts, state):
            delta, s = rule.update(grad, s, theta)
            total = delta if total is None else total + delta
            new_state.append(s)
        return total, tuple(new_state)
