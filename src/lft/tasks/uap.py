"""Few-shot universal adversarial perturbations (the paper's Sec. 4, Eq. 12, Table 1).

A task picks ``ways`` classes of one image source and ``shots`` images per class from the
source's *train* split as its fine-tuning set, and images of the same classes from its *test*
split as validation and (disjoint) test query sets; every image is one the victim classifies
correctly, so the clean attack success rate is 0. The optimisee is one perturbation ``delta``
of the image's shape, shared by all the task's images (universal), from a random start
``U(-init_scale, init_scale)`` per pixel. Its loss on a split is Eq. (12)::

    mean over images of  max(log p_y(x') - max_{j != y} log p_j(x'), -kappa)  +  lam * ||delta||_2^2
    with x' = clamp(x + delta, 0, 1)

(the C&W margin on log-probabilities, ``kappa = 0``: zero once another class is top-1).
:meth:`UAPBatch.metrics` reports, per task:

* ``asr``: attack success rate, the fraction of the split's images whose top-1 prediction
  under ``x'`` differs from the true label;
* ``distortion``: ``||delta||_2 / sqrt(d)`` (root mean square per pixel, ``d`` = C*H*W), and
  ``l2``: the raw ``||delta||_2``;
* ``loss`` (Eq. 12) and ``margin`` (its first term alone).

**Fixed budget.** With ``eps`` set (:class:`UAPFamily`, :class:`UAPBatch`), ``delta`` is kept
in the ball ``||delta||_2 <= eps`` (``norm="2"``: the raw norm over the whole ``C x H x W``
perturbation, as IBM ART's ``UniversalPerturbation(norm=2, eps=eps)`` defines it on images in
``[0, 1]``) or ``|delta_i| <= eps`` (``norm="inf"``): the random start and every fine-tuning step
are projected onto it (:func:`project_ball`, :meth:`UAPBatch.project`). ``lam`` may then be 0.

:func:`steps_to_asr` turns an ASR curve into the number of fine-tuning steps to first reach a
threshold (75%) within K steps, NaN when never (the paper's "N/A").

Meta-train and meta-test tasks use disjoint images (:func:`lft.data.meta_splits`, applied to
the correctly classified images). MNIST (1x28x28) and CIFAR-10 (3x32x32) perturbations differ in
shape, so a :class:`~lft.tasks.MixtureFamily` of the two gives two shape groups.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lft import validation
from lft.data import (
    ImageSplit,
    class_index,
    draw_per_class,
    gather_images,
    meta_splits,
    resolve_data_dir,
)
from lft.data.episodes import PARTS
from lft.data.sources import SOURCES
from lft.data.user import split_digest
from lft.seeding import derive_seed
from lft.tasks.base import TaskBatch, TaskFamily
from lft.tasks.images import image_source
from lft.tasks.uap_loss import (  # noqa: F401 - re-exported: the UAP loss pieces
    NORMS,
    attack_success,
    check_budget,
    cw_margin,
    project_ball,
    steps_to_asr,
)

VICTIMS = ("default", "quick")


class Perturbation:
    """The optimisee of a UAP task as a "model": ``f(delta, x) = victim(clamp(x + delta, 0, 1))``.

    Duck-types :class:`~lft.models.FlatModel` (``dim``, ``roles``, ``init``, call): ``delta`` is
    a flat ``(B, D)`` batch, or ``(B, P, D)`` (``P`` perturbed copies, for the zeroth-order
    oracle); ``x`` is ``(B, N, C, H, W)``. All coordinates share role 0: a pixel offset.
    """

    chunk = 512

    def __init__(self, victim, shape: tuple[int, int, int], init_scale: float = 0.05):
        self.victim, self.shape = victim, tuple(int(s) for s in shape)
        self.dim = math.prod(self.shape)
        self.init_scale = float(init_scale)

    @property
    def roles(self) -> torch.Tensor:
        return torch.zeros(self.dim, dtype=torch.long)

    def init(self, n: int, generator: torch.Generator | None = None,
             dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``n`` random starts, uniform in ``[-init_scale, init_scale]`` per pixel."""
        u = torch.rand(n, self.dim, generator=generator, dtype=dtype)
        return (2 * u - 1) * self.init_scale

    def perturbed(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``clamp(x + delta, 0, 1)``: ``(B, N, C, H, W)`` or ``(B, P, N, C, H, W)``."""
        if theta.shape[-1] != self.dim:
            raise ValueError(f"perturbation has {theta.shape[-1]} entries but images of shape "
                             f"{self.shape} need {self.dim}")
        delta = theta.reshape(*theta.shape[:-1], 1, *self.shape)
        if theta.dim() == 3:
            x = x[:, None]
        elif theta.dim() != 2:
            raise ValueError(f"delta must have shape (B, D) or (B, P, D), got {tuple(theta.shape)}")
        return (x + delta).clamp(0.0, 1.0)

    def __call__(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Victim logits on the perturbed images, ``(..., N, K)``.

        The images go to the victim in chunks of at most :attr:`chunk` (a CPU convolution is
        about 1.5x cheaper per image at 500 images than at 5 000: the activations stay in cache).
        """
        xp = self.perturbed(theta, x)
        flat = xp.reshape(-1, *self.shape)
        logits = torch.cat([self.victim(flat[i:i + self.chunk])
                            for i in range(0, len(flat), self.chunk)])
        return logits.reshape(*xp.shape[:-3], logits.shape[-1])


@dataclass
class UAPBatch(TaskBatch):
    """``B`` UAP tasks; ``data[split] = (images (B, N, C, H, W), true labels (B, N))``.

    ``lam`` weighs ``||delta||_2^2`` in the loss; ``kappa`` is the C&W confidence. ``eps``
    (optional) is a perturbation budget of the ``norm`` (``"2"`` or ``"inf"``): :meth:`init` and
    :meth:`project` keep ``delta`` within it.
    """

    lam: float = 0.01
    kappa: float = 0.0
    eps: float | None = None
    norm: str = "2"

    def __post_init__(self):
        super().__post_init__()
        self.eps, self.norm = check_budget(self.eps, self.norm, "UAP tasks")

    def project(self, theta: torch.Tensor) -> torch.Tensor:
        """``theta`` projected onto the budget's ball (:func:`project_ball`); the identity (the
        very same tensor) without a budget."""
        return theta if self.eps is None else project_ball(theta, self.eps, self.norm)

    def init(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Random starts (:meth:`Perturbation.init`), projected onto the budget's ball."""
        return self.project(super().init(generator))

    def _labels(self, theta: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y[:, None].expand(y.shape[0], theta.shape[1], *y.shape[1:]) if theta.dim() == 3 \
            else y

    def loss(self, theta: torch.Tensor, split: str = "train") -> torch.Tensor:
        """Eq. (12) per task: ``(B, D) -> (B,)`` or ``(B, P, D) -> (B, P)``."""
        x, y = self.data[split]
        logits = self.model(theta, x)
        margin = cw_margin(logits, self._labels(theta, y), self.kappa).mean(-1)
        return margin + self.lam * theta.pow(2).sum(-1)

    @torch.no_grad()
    def metrics(self, theta: torch.Tensor, split: str = "test") -> dict[str, torch.Tensor]:
        """ASR, distortion ``||delta||_2/sqrt(d)``, raw ``||delta||_2``, loss and margin."""
        x, y = self.data[split]
        logits = self.model(theta, x)
        margin = cw_margin(logits, y, self.kappa).mean(-1)
        l2 = theta.norm(dim=-1)
        return {"asr": attack_success(logits, y), "distortion": l2 / math.sqrt(self.dim),
                "l2": l2, "loss": margin + self.lam * l2.pow(2), "margin": margin}

    @torch.no_grad()
    def asr(self, theta: torch.Tensor, split: str = "test",
            index: torch.Tensor | None = None) -> torch.Tensor:
        """Attack success rate alone, of the tasks at ``index`` (all by default): ``theta``
        ``(len(index), D)`` -> ``(len(index),)``, equal to ``metrics(...)["asr"]`` there."""
        x, y = self.data[split]
        if index is not None:
            x, y = x[index], y[index]
        return attack_success(self.model(theta, x), y)

    def merged(self) -> UAPBatch:
        """L2O's view: fine-tune on ``D_tr + D_val``, meta-loss on the same."""
        (xt, yt), (xv, yv) = self.data["train"], self.data["val"]
        both = (torch.cat([xt, xv], 1), torch.cat([yt, yv], 1))
        return UAPBatch(self.model, dict(self.data, train=both, val=both),
                        primary_metric=self.primary_metric, info=self.info,
                        lam=self.lam, kappa=self.kappa, eps=self.eps, norm=self.norm)


# ------------------------------------------------------------------------- the family

def _per_class(split: ImageSplit, k: int, seed: int) -> ImageSplit:
    """At most ``k`` images of each class of ``split``, a seeded choice, in original order."""
    rng = np.random.default_rng(derive_seed(seed, "uap/pool"))
    keep = [idx[rng.permutation(len(idx))[:k]] for idx in class_index(split)]
    return split.subset(np.sort(np.concatenate(keep)))


_CORRECT: dict[tuple, dict] = {}  # (victim key, source, data folder) -> correctly classified


@torch.no_grad()
def _correct_only(victim, data: dict, key: tuple) -> dict:
    """Each split of ``data`` restricted to the images ``victim`` classifies correctly."""
    if key not in _CORRECT:
        out = {}
        for split, s in data.items():
            preds = []
            for i in range(0, len(s), 500):
                x = torch.from_numpy(s.images[i:i + 500]).permute(0, 3, 1, 2).float() / 255
                preds.append(victim(x).argmax(-1))
            ok = torch.cat(preds).numpy() == s.labels
            out[split] = s.subset(np.flatnonzero(ok))
        while len(_CORRECT) >= 4:  # bounded: a few sources' arrays at a time
            _CORRECT.pop(next(iter(_CORRECT)))
        _CORRECT[key] = out
    return _CORRECT[key]


#: what a family given a victim object (not a file) writes as its victim in config()
VICTIM_IN_MEMORY = "<in-memory victim>"


def resolve_victim(victim, source: str, data_dir: str | None = None):
    """``"default"`` / ``"quick"``: the cached LeNet-5 of named ``source`` (trained if missing);
    a :class:`~lft.tasks.victims.Victim`: itself; anything else: the path of a victim file
    written by ``lft victims train``."""
    from lft.tasks.victims import Victim, load_victim, read_victim

    if isinstance(victim, Victim):
        return victim
    if victim == VICTIM_IN_MEMORY:
        raise ValueError("this UAP configuration was made with a victim object, which it cannot "
                         "hold; fix: save the victim (lft.attacks.save_victim) and pass its path")
    if victim in VICTIMS:
        if source not in SOURCES:
            raise ValueError(f"victim {victim!r} is the cached LeNet-5 of a named source, and "
                             f"{source} is a user's source; fix: train one on it "
                             "(lft.tasks.victims.train_or_reuse, or the lft victims train "
                             "command) and pass victim='V.safetensors'")
        return load_victim(source, data_dir, quick=victim == "quick", train_if_missing=True,
                           progress=True)
    return read_victim(victim)


class UAPFamily(TaskFamily):
    """Few-shot UAP tasks on ``source`` against ``victim``.

    Args:
        source: ``"mnist"``, ``"cifar10"``, the path of a user's image source or ``(train,
            test)`` :class:`~lft.data.ImageSplit` s (:mod:`lft.tasks.images`).
        victim: ``"default"`` (the cached LeNet-5 of a named source, trained on first use:
            minutes), ``"quick"`` (a weaker one trained in seconds, for tests), a victim file
            path, or a :class:`~lft.tasks.victims.Victim`.
        lam: weight of ``||delta||_2^2`` in the loss (Eq. 12).
        ways, shots: classes per task and fine-tuning images per class.
        queries: validation images per class, and as many test images per class (disjoint).
        init_scale: random start ``U(-init_scale, init_scale)`` per pixel.
        pool: consider only this many images per class of each split (a seeded subset, taken
            before the victim's correct images are kept and meta-train/test parts cut); ``None``
            uses all. Classifying all of MNIST once costs about 10 s on one core.
        eps: a perturbation budget (``None``: none): the random start and every fine-tuning
            step are projected onto the ball of radius ``eps`` of ``norm``.
        norm: ``"2"`` (``||delta||_2 <= eps``, the raw norm over all ``C*H*W`` pixels) or
            ``"inf"`` (``|delta_i| <= eps``).
    """

    congruous = True

    def __init__(self, source="mnist", victim="default", lam: float = 0.01,
                 ways: int = 2, shots: int = 5, queries: int = 10, kappa: float = 0.0,
                 init_scale: float = 0.05, part: str = "meta-train",
                 data_dir: str | None = None, split_seed: int = 0, pool: int | None = None,
                 eps: float | None = None, norm: str = "2"):
        where = "UAP family"
        self.eps, self.norm = check_budget(eps, norm, where)
        ways, shots, queries = (validation.integer(label, n, 1, where=where) for label, n in (
            ("ways", ways), ("shots", shots), ("queries", queries)))
        lam, kappa, init_scale = (validation.number(label, x, 0.0, where=where) for label, x in (
            ("lam", lam), ("kappa", kappa), ("init_scale", init_scale)))
        if pool is not None:
            pool = validation.integer("pool (images per class, or None)", pool, 1, where=where)
        validation.choice("part", part, PARTS, where)
        validation.path_or_none("data_dir", data_dir, where)
        split_seed = validation.integer("split_seed", split_seed, None, where=where)
        data, source, label = image_source(source, data_dir, where)
        self.victim = resolve_victim(victim if not isinstance(victim, str | Path)
                                     else validation.text("victim", str(victim), where),
                                     source, data_dir)
        self.source, self.lam, self.kappa = source, float(lam), float(kappa)
        self.victim_spec = VICTIM_IN_MEMORY if victim is self.victim else str(victim)
        self.ways, self.shots, self.queries = int(ways), int(shots), int(queries)
        self.init_scale, self.part, self.data_dir = float(init_scale), part, data_dir
        self.split_seed, self.pool = int(split_seed), (None if pool is None else int(pool))
        self.name = f"uap-{label}"
        if self.pool is not None:
            data = {k: _per_class(v, self.pool, self.split_seed) for k, v in data.items()}
        h, w, c = data["train"].image_shape
        if self.victim.input_shape not in (None, (c, h, w)):
            raise ValueError(f"victim {self.victim.name} takes images of shape "
                             f"{'x'.join(map(str, self.victim.input_shape))} (CxHxW), but "
                             f"{label} images are {c}x{h}x{w}; fix: attack a victim trained on "
                             "this source (lft victims train --source PATH)")
        if self.victim.classes is not None and self.victim.classes != data["train"].classes:
            raise ValueError(f"victim {self.victim.name} knows classes {self.victim.classes[:5]}"
                             f" but {label} has classes {data['train'].classes[:5]}; fix: attack "
                             "a victim trained on this source (lft victims train --source PATH)")
        where_data = str(resolve_data_dir(data_dir)) if source in SOURCES else \
            (split_digest(data),)
        key = (self.victim.key, source, where_data, self.pool, self.split_seed)
        self._correct = _correct_only(self.victim, data, key)
        self.model = Perturbation(self.victim, (c, h, w), self.init_scale)
        self._set_part(part)

    def _set_part(self, part: str) -> None:
        self.part = part
        self._splits = meta_splits(self._correct, part, self.split_seed)
        n_tr, n_val = (s.counts() for s in self._splits)
        ok = (n_tr >= self.shots) & (n_val >= 2 * self.queries)
        self._eligible = torch.from_numpy(np.flatnonzero(ok))
        if len(self._eligible) < self.ways:
            raise ValueError(f"{self.name} ({part}): only {len(self._eligible)} classes have "
                             f"{self.shots} correctly classified fine-tuning images and "
                             f"{2 * self.queries} query images; need {self.ways}"
                             + (f" (fix: a larger pool than {self.pool})" if self.pool else ""))

    def config(self) -> dict:
        """The options; ``eps`` and ``norm`` only with a budget, so configurations (and
        checkpoints) written before budgets existed compare equal."""
        budget = {} if self.eps is None else {"eps": self.eps, "norm": self.norm}
        return {"task": "uap", "source": self.source, "victim": self.victim_spec,
                "lam": self.lam, "ways": self.ways, "shots": self.shots,
                "queries": self.queries, "kappa": self.kappa, "init_scale": self.init_scale,
                "part": self.part, "data_dir": self.data_dir, "split_seed": self.split_seed,
                "pool": self.pool, **budget}

    def for_part(self, part: str) -> UAPFamily:
        """The same family (same victim) over the meta-train or meta-test images."""
        if part == self.part:
            return self
        other = copy.copy(self)  # keeps a subclass and its own attributes
        other._set_part(part)
        return other

    def sample(self, n: int, generator: torch.Generator | None = None) -> UAPBatch:
        """``n`` tasks; labels are the victim's class indices (``info["classes"]``, ``(n, ways)``).

        Classes are drawn uniformly among those with enough correctly classified images.
        """
        split_tr, split_val = self._splits
        pick = torch.rand(n, len(self._eligible), generator=generator).argsort(1)[:, :self.ways]
        classes = self._eligible[pick]
        q = self.queries
        idx_tr = draw_per_class(class_index(split_tr), classes, self.shots, generator)
        idx_q = draw_per_class(class_index(split_val), classes, 2 * q, generator)
        y_tr = classes.repeat_interleave(self.shots, dim=1)
        y_q = classes.repeat_interleave(q, dim=1)
        data = {"train": (gather_images(split_tr, idx_tr.reshape(n, -1)), y_tr),
                "val": (gather_images(split_val, idx_q[:, :, :q].reshape(n, -1)), y_q),
                "test": (gather_images(split_val, idx_q[:, :, q:].reshape(n, -1)), y_q)}
        return UAPBatch(self.model, data, primary_metric="asr", info={"classes": classes},
                        lam=self.lam, kappa=self.kappa, eps=self.eps, norm=self.norm)
