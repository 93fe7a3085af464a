"""Incongruous families: tasks of several families (different optimisee shapes) mixed.

One meta-batch of a :class:`MixtureFamily` holds tasks of every member family, grouped by
family so that each group runs as one batched computation; a coordinate-wise rule serves all
groups, which is what lets LFT and L2O meta-learn across an MLP on MNIST and a CNN on
CIFAR-10 at once. A learned initialisation (MAML) has no single shape here and is refused.
"""

from __future__ import annotations

import torch

from lft import validation as v
from lft.tasks.base import TaskBatch, TaskFamily


class MixtureFamily(TaskFamily):
    """Each task comes from member ``i`` with probability ``weights[i]`` (uniform default)."""

    congruous = False

    def __init__(self, families: list[TaskFamily], weights: list[float] | None = None):
        families = v.sequence("families", families, where="mixture")
        if len(families) < 2 or not all(isinstance(f, TaskFamily) for f in families):
            raise ValueError("a mixture needs a list of at least two task families (TaskFamily "
                             f"objects or, through build_family, their configurations), got "
                             f"{[type(f).__name__ for f in families]}")
        n = len(families)
        raw = [1.0] * n if weights is None else v.sequence("weights", weights, n, "mixture")
        w = torch.tensor([v.number("weight", x, 0.0, where="mixture") for x in raw],
                         dtype=torch.float64)
        if w.sum() <= 0:
            raise ValueError(f"mixture weights must be {n} non-negative numbers with a positive "
                             f"sum, got {weights}")
        self.families, self.weights = list(families), (w / w.sum()).tolist()
        self.name = "+".join(f.name for f in self.families)

    def config(self) -> dict:
        return {"task": "mixture", "families": [f.config() for f in self.families],
                "weights": self.weights}

    def for_part(self, part: str) -> "MixtureFamily":
        return MixtureFamily([f.for_part(part) for f in self.families], self.weights)

    def sample(self, n: int, generator: torch.Generator | None = None) -> list[TaskBatch]:
        """``n`` tasks split among the members; one batch per member that drew any."""
        which = torch.multinomial(torch.tensor(self.weights), n, replacement=True,
                                  generator=generator)
        counts = torch.bincount(which, minlength=len(self.families)).tolist()
        return [f.sample(c, generator) for f, c in zip(self.families, counts) if c > 0]
