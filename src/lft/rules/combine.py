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



def schedule_start(init, steps: int, per_role: bool, n_roles: int) -> list:
    """``init`` of :class:`Scheduled` checked: ``steps`` positive numbers, or (``per_role``)
    ``steps`` rows of ``n_roles`` positive numbers; as plain floats."""
    rows = list(init) if isinstance(init, (list, tuple)) else None
    nested = rows is not None and bool(rows) and all(isinstance(r, (list, tuple)) for r in rows)
    try:
        start = [[float(m) for m in r] for r in rows] if nested else [float(m) for m in rows]
    except (TypeError, ValueError):
        start = None
    flat = [m for r in start for m in r] if nested and start else (start or [])
    ok = (start is not None and len(start) == steps and all(m > 0 for m in flat)
          and (not nested or (per_role and all(len(r) == n_roles for r in start))))
    if not ok:
        raise ValueError(f"scheduled rule: init must list {steps} positive multipliers (one per "
                         f"step), or, with per_role, {steps} rows of {n_roles} (one per role); "
                         f"got {init!r}")
    return start


class Scheduled(UpdateRule):
    """A rule's step times a meta-learned multiplier per step (and per parameter role).

    ``delta = exp(gain * s[min(t, steps - 1), role]) * delta_base``, where ``t`` counts the
    steps taken and ``role`` is the coordinate's role (weight/bias of the first/middle/last
    layer, :attr:`lft.models.FlatModel.roles`). ``s`` starts at zero, so the rule starts as
    exactly its base: a learned learning-rate schedule (per kind of layer with ``per_role``) on
    top of a tuned hand-designed rule. Steps past ``steps`` reuse the last row. ``gain``
    scales how fast meta-training moves the schedule: the meta-optimiser takes steps of about
    its learning rate in ``s``, and a schedule must move by factors of 2, not of 1.003.
    ``init`` (optional) starts the multipliers there instead of at 1: ``steps`` positive
    numbers (every role alike; e.g. a decaying schedule chosen on meta-training tasks) or
    ``steps`` rows of one positive number per role (``per_role`` only; e.g. larger steps for
    the last layer).
    """

    kind = "scheduled"

    def __init__(self, rule, steps: int = 20, per_role: bool = True, gain: float = 10.0,
                 init: list[float] | None = None):
        super().__init__()
        from lft.rules import build  # the registry imports this module
        from lft.rules.features import N_ROLES

        self.base = rule if isinstance(rule, UpdateRule) else build(rule)
        self.steps, self.per_role, self.gain = int(steps), bool(per_role), float(gain)
        self.start = None if init is None else schedule_start(init, self.steps, self.per_role,
                                                               N_ROLES)
        log_scale = torch.zeros(self.steps, N_ROLES if self.per_role else 1)
        if self.start is not None:
            start = torch.tensor(self.start, dtype=log_scale.dtype)
            log_scale += torch.log(start if start.dim() == 2 else start[:, None]) / self.gain
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
