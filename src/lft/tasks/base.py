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

    def __post_init__(self):
        check_task_data(self.data)

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

    def project(self, theta: torch.Tensor) -> torch.Tensor:
        """``theta`` mapped into the tasks' feasible set after every fine-tuning step.

        The identity here (unconstrained tasks); a task with a budget (a UAP of radius
        ``eps``, :class:`lft.tasks.UAPBatch`) projects onto it, differentiably, so the
        meta-gradient flows through the projection.
        """
        return theta

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


def check_task_data(data: dict) -> None:
    """Refuse task data that cannot be fine-tuned on: a missing ``"train"`` split, splits that
    disagree on the number of tasks, or NaN/infinite values (which would silently turn every
    meta-gradient non-finite). A user's :meth:`TaskFamily.sample` is checked here."""
    if not isinstance(data, dict) or "train" not in data:
        raise ValueError("task data must be a dict {split: (x, y)} with at least a 'train' split")
    sizes = set()
    for split, pair in data.items():
        if not (isinstance(pair, tuple | list) and len(pair) == 2
                and all(isinstance(t, torch.Tensor) for t in pair)):
            raise ValueError(f"task data[{split!r}] must be a pair of tensors (x, y) of shape "
                             f"(tasks, points, ...), got {type(pair).__name__}")
        for what, t in zip(("inputs x", "targets y"), pair):
            if t.dim() < 2:
                raise ValueError(f"task data[{split!r}] {what} must have shape (tasks, points, "
                                 f"...), got {tuple(t.shape)}")
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise ValueError(f"task data[{split!r}] {what} contain NaN or infinite values; "
                                 "fix: clean or drop those examples before sampling tasks")
            sizes.add(t.shape[0])
        if pair[0].shape[1] != pair[1].shape[1]:
            raise ValueError(f"task data[{split!r}] has {pair[0].shape[1]} inputs but "
                             f"{pair[1].shape[1]} targets per task; they must match")
    if len(sizes) != 1:
        raise ValueError(f"task data splits disagree on the number of tasks: {sorted(sizes)}; "
                         "every x and y must have the same first dimension")


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
        """``{"task": name, **options}``: JSON that rebuilds the family with
        :func:`lft.tasks.build_family` (stored in checkpoints)."""
        raise NotImplementedError  # pragma: no cover - interface
