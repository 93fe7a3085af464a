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



class Scheduled(UpdateRule):
    """A rule's step times a meta-learned multiplier per step (and per parameter role).

    ``delta = exp(gain * s[min(t, steps - 1), role]) * delta_base``, where ``t`` counts the
    steps taken and ``role`` is the coordinate's role (weight/bias of the first/middle/last
    layer, :attr:`lft.models.FlatModel.roles`). ``s`` starts at zero, so the rule starts as
    exactly its base: a learned learning-rate schedule (per kind of layer with ``per_role``) on
    top of a tuned hand-designed rule. Steps past ``steps`` reuse the last row. ``gain``
    scales how fast meta-training moves the schedule: the meta-optimiser takes steps of about
    its learning rate in ``s``, and a schedule must move by factors of 2, not of 1.003.
    ``init`` (optional, ``steps`` positive numbers) starts the multipliers there instead of at
    1, e.g. a decaying schedule chosen on meta-training tasks, for every role.
    """

    kind = "scheduled"

    def __init__(self, rule, steps: int = 20, per_role: bool = True, gain: float = 10.0,
                 init: list[float] | None = None):
        super().__init__()
        from lft.rules import build  # the registry imports this module
        from lft.rules.features import N_ROLES

        self.base = rule if isinstance(rule, UpdateRule) else build(rule)
        self.steps, self.per_role, self.gain = int(steps), bool(per_role), float(gain)
        self.start = None if init is None else [float(m) for m in init]
        if self.start is not None and (len(self.start) != self.steps
                                       or not all(m > 0 for m in self.start)):
            raise ValueError(f"scheduled rule: init must list {self.steps} positive multipliers "
                             f"(one per step), got {init!r}")
        log_scale = torch.zeros(self.steps, N_ROLES if self.per_role else 1)
        if self.start is not None:
            log_scale += torch.log(torch.tensor(self.start))[:, None] / self.gain
        self.log_scale = nn.Parameter(log_scale)

    def config(self) -> dict:
        out = {"type": self.kind, "rule": self.base.config(), "steps": self.steps,
               "per_role": self.per_role, "gain": self.gain}
        return out if self.start is None else {**out, "init": list(self.start)}

    def multipliers(self) -> torch.Tensor:
        """The learned factors ``exp(gain * s)``, ``(steps, roles)`` (one column without roles)."""
        return torch.exp(self.gain * self.log_scale.detach())

    def init(self, theta: torch.Tensor, roles: torch.Tensor | None = None) -> State:
        base_state = self.base.init(theta, roles)
        if self.per_role:
            if roles is None:
                raise ValueError("a per-role schedule needs coordinate roles: init(theta, roles)")
            index = torch.as_tensor(roles, dtype=torch.long, device=theta.device)
        else:
            index = torch.zeros((), dtype=torch.long, device=theta.device)
        return (base_state, torch.zeros((), dtype=torch.long, device=theta.device), index)

    def update(self, grad: torch.Tensor, state: State,
               theta: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        base_state, t, roles = state
        delta, base_state = self.base.update(grad, base_state, theta)
        row = self.log_scale.index_select(0, t.clamp(max=self.steps - 1).reshape(1))[0]
        scale = torch.exp(self.gain * row).to(delta.dtype)[roles]
        return scale * delta, (base_state, t + 1, roles)
