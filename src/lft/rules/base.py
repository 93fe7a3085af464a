"""The one interface every update rule (learned or hand-designed) implements.

A rule is an ``nn.Module`` (its parameters, if any, are the meta-parameters ``phi``) with two
pure methods, in the style of optax/torchopt:

* ``init(theta, roles=None) -> state``: the rule's state for an optimisee shaped like
  ``theta``; ``roles`` (integers broadcastable to ``theta``, see ``FlatModel.roles``) tells a
  rule that wants it which kind of parameter each coordinate is;
* ``update(grad, state, theta=None) -> (delta, state)``: the additive update
  ``theta <- theta + delta``; ``theta`` is passed for rules that read the optimisee itself
  (the LSTM's ``param`` feature), the others ignore it.

Rules act coordinate-wise, so ``theta`` may have any shape: a flat ``(D,)`` vector, a batch of
tasks ``(B, D)``, or one leaf of a parameter dict. :func:`tree_init` and :func:`tree_update`
apply a rule to a dict of tensors. States are tuples of tensors so they can be detached (for
truncated back-propagation), saved, and carried across windows.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

#: A tuple of tensors, or (for combined rules) of such tuples.
State = tuple


class UpdateRule(nn.Module):
    """Base class: maps a gradient (or estimate) and a state to an additive update."""

    #: registry name used in configurations and checkpoints
    kind: str = "rule"

    def init(self, theta: torch.Tensor, roles: torch.Tensor | None = None
             ) -> State:  # pragma: no cover - interface
        """The rule's state for an optimisee shaped like ``theta`` (``roles``: per-coordinate
        parameter kinds, for rules that read them)."""
        raise NotImplementedError

    def update(self, grad: torch.Tensor, state: State,
               theta: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """``(delta, new_state)``: the additive update ``theta <- theta + delta`` for the
        gradient (or estimate) ``grad``; pure, so it can be differentiated through."""
        raise NotImplementedError  # pragma: no cover - interface

    def config(self) -> dict:
        """The JSON-serialisable arguments that rebuild this rule (see ``lft.rules.build``)."""
        raise NotImplementedError  # pragma: no cover - interface

    def step(self, theta: torch.Tensor, grad: torch.Tensor, state: State):
        """Convenience: ``(theta + delta, state)``."""
        delta, state = self.update(grad, state, theta)
        return theta + delta, state


def detach_state(state: State) -> State:
    """Cut the graph behind a state (truncated back-propagation through time)."""
    return tuple(detach_state(s) if isinstance(s, tuple) else s.detach() for s in state)


def tree_init(rule: UpdateRule, params: Mapping[str, torch.Tensor]) -> dict[str, State]:
    """``init`` for a dict of tensors: one state per leaf."""
    return {k: rule.init(v) for k, v in params.items()}


def tree_update(rule: UpdateRule, grads: Mapping[str, torch.Tensor],
                state: Mapping[str, State], params: Mapping[str, torch.Tensor] | None = None
                ) -> tuple[dict[str, torch.Tensor], dict[str, State]]:
    """``update`` for a dict of tensors; the rule is shared by every leaf (coordinate-wise)."""
    deltas, new_state = {}, {}
    for k, g in grads.items():
        theta = params[k] if params is not None else None
        deltas[k], new_state[k] = rule.update(g, state[k], theta)
    return deltas, new_state
