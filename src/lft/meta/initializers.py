"""Where fine-tuning starts: a random initial optimisee (LFT, L2O) or a learned one (MAML)."""

from __future__ import annotations

import torch
from torch import nn

from lft.tasks.base import TaskBatch


class RandomInit(nn.Module):
    """Each task's optimisee starts from the family's random initialisation."""

    learned = False

    def forward(self, tasks: TaskBatch, generator: torch.Generator | None = None) -> torch.Tensor:
        return tasks.init(generator)


class LearnedInit(nn.Module):
    """A meta-learned initial optimisee ``theta_0`` shared by every task (MAML).

    Only defined for congruous tasks: ``theta_0`` has the one shape every task shares.
    """

    learned = True

    def __init__(self, theta0: torch.Tensor):
        super().__init__()
        if theta0.dim() != 1:
            raise ValueError("a learned initialisation is a flat vector of shape (D,)")
        self.theta0 = nn.Parameter(theta0.clone())

    def forward(self, tasks: TaskBatch, generator: torch.Generator | None = None) -> torch.Tensor:
        if tasks.dim != self.theta0.numel():
            raise ValueError(
                f"learned initialisation has {self.theta0.numel()} coordinates but these tasks "
                f"have {tasks.dim}: a learned initialisation needs congruous tasks "
                "(use a random initialisation for incongruous ones)")
        return self.theta0.expand(tasks.size, -1)
