"""The inner loop: fine-tune a batch of tasks with a rule fed by an oracle."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from lft.rules.base import State, UpdateRule
from lft.tasks.base import TaskBatch


def trajectory(rule: UpdateRule, oracle, tasks: TaskBatch, theta: torch.Tensor, state: State,
               steps: int, generator: torch.Generator | None = None
               ) -> Iterator[tuple[torch.Tensor, State]]:
    """Yield ``(theta_k, state_k)`` for ``k = 1..steps`` (Eq. 3, Algorithm 1 step 6).

    The oracle only ever sees the fine-tuning split. Whether the result carries a graph back
    to the rule's parameters depends on the caller's grad mode: the same loop serves
    meta-training (graph kept) and evaluation (``torch.no_grad``).
    """

    def loss_fn(th: torch.Tensor) -> torch.Tensor:
        return tasks.loss(th, "train")

    for _ in range(steps):
        grad = oracle(loss_fn, theta, generator)
        delta, state = rule.update(grad, state, theta)
        theta = theta + delta
        yield theta, state
