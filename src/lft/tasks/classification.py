"""N-way K-shot image classification (the paper's Table 2 and Figure 3).

A task draws ``ways`` classes of one image source (a named data set, the path of a user's
source or ``(train, test)`` splits in memory; :mod:`lft.tasks.images`), ``shots`` fine-tuning
images per class from the source's train split, and validation and test query images from its
test split (disjoint). Meta-training tasks and meta-test tasks use disjoint images
(:func:`lft.data.meta_splits`): :meth:`ClassificationFamily.part` switches between them.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from lft import validation as v
from lft.data import DataError, meta_splits, sample_episodes
from lft.data.episodes import PARTS
from lft.tasks.base import TaskBatch, TaskFamily
from lft.tasks.images import MODELS, build_classifier, image_source


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per task: ``(B, N, K), (B, N) -> (B,)``."""
    b, n, k = logits.shape
    return F.cross_entropy(logits.reshape(b * n, k), y.reshape(b * n),
                           reduction="none").view(b, n).mean(1)


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fraction of correct top-1 predictions per task."""
    return (logits.argmax(-1) == y).float().mean(1)


class ClassificationFamily(TaskFamily):
    """``ways``-way ``shots``-shot tasks of ``source`` for ``model``.

    ``source``: ``"mnist"``, ``"cifar10"``, the path of a user's image source, or ``(train,
    test)`` :class:`~lft.data.ImageSplit` s. ``model``: ``"mlp"``, ``"conv4"``, ``"lenet5"`` or
    a factory ``(image_shape, ways) -> nn.Module`` (see :mod:`lft.tasks.images`). The image
    shape and classes are read from the data; ``ways`` is the classes per task.
    """

    congruous = True

    def __init__(self, source="mnist", model="mlp", ways: int = 2, shots: int = 5,
                 queries: int = 15, part: str = "meta-train", data_dir: str | None = None,
                 split_seed: int = 0):
        where = "classification family"
        if isinstance(model, str):
            model = v.choice("classifier", model, MODELS, where) \
                if not model.startswith("<") else model
        ways = v.integer("ways (classes per task)", ways, 2, where=where)
        shots, queries = (v.integer(label, n, 1, where=where)
                          for label, n in (("shots", shots), ("queries", queries)))
        part = v.choice("part", part, PARTS, where)
        data_dir = v.path_or_none("data_dir", data_dir, where)
        split_seed = v.integer("split_seed", split_seed, None, where=where)
        self._data, source, label = image_source(source, data_dir, where)
        self.source, self.ways = source, ways
        self.shots, self.queries, self.part = shots, queries, part
        self.data_dir, self.split_seed = data_dir, split_seed
        self._splits = meta_splits(self._data, part, split_seed)
        h, w, c = self._splits[0].image_shape
        self.model, self.model_name = build_classifier(model, (c, h, w), ways, where)
        self.name = f"{label}-{self.model_name if isinstance(model, str) else 'model'}"
        self._check_fits()

    def config(self) -> dict:
        return {"task": "classification", "source": self.source, "model": self.model_name,
                "ways": self.ways, "shots": self.shots, "queries": self.queries,
                "part": self.part, "data_dir": self.data_dir, "split_seed": self.split_seed}

    def for_part(self, part: str) -> "ClassificationFamily":
        """The same family over the meta-train or meta-test images."""
        if part == self.part:
            return self
        other = copy.copy(self)  # keeps a subclass and its own attributes
        other.part = part
        other._splits = meta_splits(self._data, part, self.split_seed)
        other._check_fits()
        return other

    def _check_fits(self) -> None:
        """Refuse now, not at the first sample, tasks that need more images than a class has
        (e.g. more shots than the data): draws one task, whose errors name the fix."""
        try:
            sample_episodes(*self._splits, 1, self.ways, self.shots, 2 * self.queries,
                            torch.Generator().manual_seed(0))
        except DataError as e:
            raise DataError(f"{self.name} ({self.part} images): {e} (a few-shot task needs "
                            f"{self.shots} fine-tuning images per class and "
                            f"{2 * self.queries} query images: 2 x queries; fix: lower "
                            "shots/queries or add images)") from None

    def sample(self, n: int, generator: torch.Generator | None = None) -> TaskBatch:
        """``n`` tasks; the test split is a second, disjoint query set of the same classes."""
        x_tr, y_tr, x_q, y_q = sample_episodes(*self._splits, n, self.ways, self.shots,
                                               2 * self.queries, generator)
        # queries come grouped by class: alternate halves of each class go to val and test
        per = 2 * self.queries
        idx = torch.arange(self.ways * per).view(self.ways, per)
        val_idx, test_idx = idx[:, :self.queries].reshape(-1), idx[:, self.queries:].reshape(-1)
        data = {"train": (x_tr, y_tr), "val": (x_q[:, val_idx], y_q[:, val_idx]),
                "test": (x_q[:, test_idx], y_q[:, test_idx])}
        return TaskBatch(self.model, data, loss_fn=cross_entropy,
                         metric_fns={"accuracy": accuracy, "loss": cross_entropy},
                         primary_metric="accuracy")
