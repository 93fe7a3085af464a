"""Tasks and task families (the optimisee side of meta-learning).

A :class:`TaskFamily` samples a :class:`TaskBatch`: ``B`` independent tasks that share one
optimisee shape (congruous), so their fine-tuning runs as one batched computation. A task
gives a random initial optimisee, its loss on each split and its test metrics:

* ``"train"``: the fine-tuning set ``D_tr``, the only data the inner loop sees;
* ``"val"``: the validation set ``D_val`` read by LFT's meta-loss;
* ``"test"``: fresh points for reporting metrics, never used for any training decision.

Families whose tasks differ in shape (incongruous) return one batch per shape group.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from lft.models.functional import FlatModel

SPLITS = ("train", "val", "test")


def mse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per task: ``(B, N, ...) -> (B,)``."""
    return ((pred - y) ** 2).flatten(start_dim=1).mean(-1)


@dataclass
class TaskBatch:
    """``B`` congruous supervised tasks: a functional model and ``(x, y)`` per split.

    ``data[split] = (x, y)`` with ``x: (B, N, ...)`` and ``y: (B, N, ...)``.
    ``loss(theta, split)`` accepts ``theta`` of shape ``(B, D)`` -> ``(B,)`` or ``(B, P, D)`` ->
    ``(B, P)``.
    """

    model: FlatModel
    data: dict[str, tuple[torch.Tensor, torch.Tensor]]
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = mse
    metric_fns: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = field(
        default_factory=lambda: {"mse": mse})
    primary_metric: str = "mse"
    info: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Number of tasks in the batch."""
        return self.data["train"][0].shape[0]

    @property
    def dim(self) -> int:
        """Number of optimisee coordinates per task."""
        return self.model.dim

    @property
    def roles(self) -> torch.Tensor:
        """Per-coordinate roles of the optimisee (see :attr:`FlatModel.roles`)."""
        return self.model.roles

    def init(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A fresh random initial optimisee per task, ``(B, D)``."""
        return self.model.init(self.size, generator)

    def loss(self, theta: torch.Tensor, split: str = "train") -> torch.Tensor:
        """Per-task loss of ``theta`` on ``split``."""
        x, y = self.data[split]
        pred = self.model(theta, x)
        if theta.dim() == 3:  # P perturbed copies per task: score them as B * P tasks
            b, p = theta.shape[:2]
            y = y[:, None].expand(b, p, *y.shape[1:]).reshape(b * p, *y.shape[1:])
            return self.loss_fn(pred.reshape(b * p, *pred.shape[2:]), y).view(b, p)
        return self.loss_fn(pred, y)

    @torch.no_grad()
    def metrics(self, theta: torch.Tensor, split: str = "test") -> dict[str, torch.Tensor]:
        """Per-task metrics of ``theta`` on ``split`` (default: the held-out test points)."""
        x, y = self.data[split]
        pred = self.model(theta, x)
        out = {name: fn(pred, y) for name, fn in self.metric_fns.items()}
        out.setdefault("loss", self.loss_fn(pred, y))
        return out

    def merged(self) -> TaskBatch:
        """L2O's view: the fine-tuning set is ``D_tr + D_val`` and the meta-loss reads it too."""
        (xt, yt), (xv, yv) = self.data["train"], self.data["val"]
        both = (torch.cat([xt, xv], 1), torch.cat([yt, yv], 1))
        data = dict(self.data, train=both, val=both)
        return TaskBatch(self.model, data, self.loss_fn, self.metric_fns, self.primary_metric,
                         self.info)


def as_groups(sampled: "TaskBatch | list[TaskBatch]") -> list["TaskBatch"]:
    """What :meth:`TaskFamily.sample` returned, as a list of congruous batches."""
    return list(sampled) if isinstance(sampled, (list, tuple)) else [sampled]


class TaskFamily:
    """A distribution over tasks. Subclasses implement :meth:`sample`."""

    name: str = "family"
    #: whether every task of the family has the same optimisee shape (MAML needs this)
    congruous: bool = True

    def sample(self, n: int, generator: torch.Generator | None = None
               ) -> TaskBatch | list[TaskBatch]:
        """``n`` tasks: one :class:`TaskBatch`, or (incongruous families) one per shape group."""
        raise NotImplementedError  # pragma: no cover - interface

    def for_part(self, part: str) -> "TaskFamily":
        """The family restricted to ``"meta-train"`` or ``"meta-test"`` data.

        Families that draw from a finite pool (images) return a family over a disjoint part of
        it; families that generate fresh data (sine) need no split and return themselves.
        """
        return self

    def config(self) -> dict:
        raise NotImplementedError  # pragma: no cover - interface
