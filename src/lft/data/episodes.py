"""Few-shot classification episodes drawn from :class:`~lft.data.ImageSplit` s.

A task draws ``ways`` distinct classes, relabels them ``0..ways-1`` in the order drawn, then
``shots`` fine-tuning images per class from ``split_tr`` and ``queries`` validation images per
class from ``split_val``, each without replacement within the task. Images come out as float32
``(C, H, W)`` in ``[0, 1]``, grouped by class (``ways * shots`` rows, class 0 first).

:func:`split_for` cuts a split into a meta-train and a meta-test part per class, so meta-test
tasks can be drawn from images that meta-training never saw.
"""

from __future__ import annotations

import numpy as np
import torch

from lft.data.errors import DataError
from lft.data.sources import ImageSplit
from lft.seeding import derive_seed

PARTS = ("meta-train", "meta-test")
#: how much of each class goes to meta-training: of the train split, of the test split
META_TRAIN_FRACTION = {"train": 0.8, "test": 0.5}
_CHUNK = 1 << 22  # random keys drawn at once when sampling images (bounds memory)


def class_index(split: ImageSplit) -> list[np.ndarray]:
    """Indices of each class's images, in label order (computed once, cached on ``split``)."""
    if split._by_class is None:
        order = np.argsort(split.labels, kind="stable")
        bounds = np.cumsum(split.counts())[:-1]
        split._by_class = np.split(order, bounds)
    return split._by_class


def _padded(index: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class indices as one ``(K, max_count)`` tensor (padded with 0) and the counts."""
    counts = torch.tensor([len(i) for i in index])
    table = torch.zeros(len(index), int(counts.max()) if len(index) else 0, dtype=torch.int64)
    for k, idx in enumerate(index):
        table[k, :len(idx)] = torch.from_numpy(idx)
    return table, counts


def draw_per_class(index: list[np.ndarray], classes: torch.Tensor, k: int,
                   generator: torch.Generator | None) -> torch.Tensor:
    """``k`` distinct image indices of each class in ``classes`` ``(T, W)`` -> ``(T, W, k)``.

    ``index`` is :func:`class_index` of a split; classes are label indices.

    Each class's images get uniform random keys, padding slots key 2; the ``k`` smallest keys
    are a uniform draw without replacement. Done for a chunk of tasks at a time.
    """
    table, counts = _padded(index)
    t, w = classes.shape
    per_task = w * table.shape[1]
    step = max(1, _CHUNK // max(per_task, 1))
    out = []
    for lo in range(0, t, step):
        c = classes[lo:lo + step]
        keys = torch.rand(*c.shape, table.shape[1], generator=generator)
        keys.masked_fill_(torch.arange(table.shape[1]) >= counts[c][..., None], 2.0)
        pos = keys.topk(k, dim=-1, largest=False).indices
        out.append(table[c[..., None], pos])
    return torch.cat(out)


def gather_images(split: ImageSplit, index: torch.Tensor) -> torch.Tensor:
    """Images at ``index`` ``(T, N)`` as float32 ``(T, N, C, H, W)`` in ``[0, 1]``."""
    x = torch.from_numpy(split.images[index.numpy()])
    return x.permute(0, 1, 4, 2, 3).float().div_(255.0)


_draw, _pixels = draw_per_class, gather_images  # the former private names


def sample_episodes(split_tr: ImageSplit, split_val: ImageSplit, n_tasks: int, ways: int = 2,
                    shots: int = 5, queries: int = 15,
                    generator: torch.Generator | None = None,
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n_tasks`` few-shot tasks: ``(x_tr, y_tr, x_val, y_val)``.

    ``x_tr``: float32 ``(n_tasks, ways*shots, C, H, W)`` in ``[0, 1]`` from ``split_tr``;
    ``y_tr``: int64 ``(n_tasks, ways*shots)`` in ``0..ways-1``; ``x_val``, ``y_val`` likewise
    with ``ways*queries`` images from ``split_val``. Classes are drawn per task without
    replacement, images without replacement within a task.
    """
    if split_tr.classes != split_val.classes:
        raise DataError(f"fine-tuning and validation splits have different classes "
                        f"({split_tr.classes} vs {split_val.classes}); pass two splits of one "
                        "data set")
    if split_tr.image_shape != split_val.image_shape:
        raise DataError(f"fine-tuning images are {split_tr.image_shape} but validation images "
                        f"are {split_val.image_shape}")
    for name, value in (("n_tasks", n_tasks), ("ways", ways), ("shots", shots),
                        ("queries", queries)):
        if int(value) != value or value < 1:
            raise DataError(f"{name} must be a positive integer, got {value!r}")
    n_classes = len(split_tr.classes)
    if ways > n_classes:
        raise DataError(f"{ways}-way tasks need {ways} classes but the data set has "
                        f"{n_classes}; use ways <= {n_classes}")
    index_tr, index_val = class_index(split_tr), class_index(split_val)
    for index, k, what, role in ((index_tr, shots, "shots", "fine-tuning"),
                                 (index_val, queries, "queries", "validation")):
        counts = np.array([len(i) for i in index])
        if counts.min() < k:
            c = int(counts.argmin())
            raise DataError(f"{what}={k} but class {split_tr.classes[c]!r} has only "
                            f"{counts[c]} {role} images; use {what} <= {counts.min()}")
    classes = torch.rand(n_tasks, n_classes, generator=generator).argsort(dim=1)[:, :ways]
    idx_tr = draw_per_class(index_tr, classes, shots, generator).reshape(n_tasks, ways * shots)
    idx_val = draw_per_class(index_val, classes, queries, generator).reshape(n_tasks,
                                                                           ways * queries)
    y_tr = torch.arange(ways).repeat_interleave(shots).expand(n_tasks, -1).contiguous()
    y_val = torch.arange(ways).repeat_interleave(queries).expand(n_tasks, -1).contiguous()
    return gather_images(split_tr, idx_tr), y_tr, gather_images(split_val, idx_val), y_val


def split_for(split: ImageSplit, part: str, fraction: float, seed: int = 0) -> ImageSplit:
    """The ``"meta-train"`` or ``"meta-test"`` part of ``split``.

    Each class's images are put in a fixed order (a permutation seeded by ``seed``); the first
    ``round(fraction * n)`` form the meta-train part, the rest the meta-test part. The two parts
    are disjoint, cover ``split`` and keep its classes and labels; images stay in their
    original order.
    """
    if part not in PARTS:
        raise DataError(f"part must be one of {', '.join(PARTS)}, got {part!r}")
    if not 0.0 < fraction < 1.0:
        raise DataError(f"fraction must lie strictly between 0 and 1, got {fraction}")
    rng = np.random.default_rng(derive_seed(seed, "data/split_for"))
    keep = []
    for idx in class_index(split):
        order = idx[rng.permutation(len(idx))]
        cut = int(round(fraction * len(idx)))
        keep.append(order[:cut] if part == "meta-train" else order[cut:])
    return split.subset(np.sort(np.concatenate(keep)))


def meta_splits(source: dict[str, ImageSplit], part: str,
                seed: int = 0) -> tuple[ImageSplit, ImageSplit]:
    """``(split_tr, split_val)`` of a source for ``part``: 80% / 20% of each class's train
    images, and the first / last half of each class's test images (:data:`META_TRAIN_FRACTION`)."""
    return tuple(split_for(source[s], part, META_TRAIN_FRACTION[s], seed)
                 for s in ("train", "test"))
