"""Sine-wave regression (MAML, Finn et al. 2017, Sec. 5.1; the paper's Figure 4)."""

from __future__ import annotations

import math

import torch

from lft import validation as v
from lft.models.functional import FlatModel
from lft.models.mlp import mlp
from lft.tasks.base import TaskBatch, TaskFamily


class SineFamily(TaskFamily):
    """``y = A sin(x - phase)``, ``A ~ U[0.1, 5]``, ``phase ~ U[0, pi]``, ``x ~ U[-5, 5]``.

    Each task has ``shots`` fine-tuning points, ``val_points`` validation points and
    ``test_points`` fresh points for metrics; the regressor is an MLP ``1-40-40-1`` (ReLU)
    trained with the MSE loss.
    """

    name = "sine"
    congruous = True

    def __init__(self, shots: int = 10, val_points: int = 10, test_points: int = 100,
                 amplitude: tuple[float, float] = (0.1, 5.0),
                 phase: tuple[float, float] = (0.0, math.pi),
                 x_range: tuple[float, float] = (-5.0, 5.0),
                 hidden: tuple[int, ...] = (40, 40)):
        where = "sine family"
        self.shots, self.val_points, self.test_points = (
            v.integer(label, n, 1, where=where) for label, n in (
                ("shots", shots), ("val_points", val_points), ("test_points", test_points)))
        self.amplitude, self.phase, self.x_range = (
            v.interval(label, r, where) for label, r in (
                ("amplitude", amplitude), ("phase", phase), ("x_range", x_range)))
        self.hidden = tuple(v.integer("hidden width", h, 1, 4096, where)
                            for h in v.sequence("hidden", hidden, where=where))
        self.model = FlatModel(mlp([1, *self.hidden, 1]))

    def config(self) -> dict:
        return {"task": self.name, "shots": self.shots, "val_points": self.val_points,
                "test_points": self.test_points, "amplitude": list(self.amplitude),
                "phase": list(self.phase), "x_range": list(self.x_range),
                "hidden": list(self.hidden)}

    def sample(self, n: int, generator: torch.Generator | None = None) -> TaskBatch:
        """``n`` tasks with their three splits."""
        def uniform(lo, hi, *shape):
            return lo + (hi - lo) * torch.rand(*shape, generator=generator)

        amp = uniform(*self.amplitude, n, 1, 1)
        phase = uniform(*self.phase, n, 1, 1)
        data = {}
        for split, count in (("train", self.shots), ("val", self.val_points),
                             ("test", self.test_points)):
            x = uniform(*self.x_range, n, count, 1)
            data[split] = (x, amp * torch.sin(x - phase))
        return TaskBatch(self.model, data, info={"amplitude": amp.flatten(),
                                                 "phase": phase.flatten()})
