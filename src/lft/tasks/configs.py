"""Task-family configurations, typed: one frozen dataclass per family.

``{"task": "sine", "shots": 5}`` is read by :meth:`FamilyConfig.from_dict` as
``SineConfig(shots=5)`` (every option checked once) and written back by ``to_dict()`` as it was
given; :func:`lft.tasks.build_family` takes either. Each dataclass's fields are its family
class's constructor options, with the same defaults: the defaults of a family. A mixture holds
its members as typed configurations too.

What only building can tell is checked then: whether an image source or a victim file exists,
and whether its images fit the tasks. Values a configuration cannot write to JSON (images in
memory, a model factory, a victim object) pass through to the family's constructor.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import ClassVar

from lft import validation as v
from lft.data.episodes import PARTS
from lft.tasks.base import TaskFamily
from lft.tasks.classification import ClassificationFamily
from lft.tasks.images import MODELS
from lft.tasks.mixture import MixtureFamily
from lft.tasks.sine import SineFamily
from lft.tasks.uap import UAPFamily
from lft.tasks.uap_loss import check_budget
from lft.typed import TypedConfig

#: family name -> class; a family of your own registered here
#: (``FAMILIES["quadratic"] = QuadraticFamily``) gets a configuration derived from its
#: constructor
FAMILIES: dict[str, type[TaskFamily]] = {"sine": SineFamily,
                                         "classification": ClassificationFamily,
                                         "mixture": MixtureFamily,
                                         "uap": UAPFamily}


@dataclasses.dataclass(frozen=True)
class FamilyConfig(TypedConfig):
    """Base of the task-family configurations: ``FamilyConfig.from_dict({"task": ..., ...})``
    reads any family (``sine``, ``classification``, ``uap``, ``mixture``)."""

    KEY: ClassVar[str] = "task"
    KINDS: ClassVar[dict] = {}
    TARGETS: ClassVar[dict] = FAMILIES
    WHAT: ClassVar[str] = "task family"
    NAME: ClassVar[str] = "a task-family configuration"
    EXAMPLE: ClassVar[str] = '{"task": "sine"}'

    def _images(self) -> None:
        """The options an image family shares: tasks, part, data folder, split seed."""
        w = self.WHERE
        for label in ("shots", "queries"):
            v.integer(label, getattr(self, label), 1, where=w)
        v.choice("part", self.part, PARTS, w)
        v.path_or_none("data_dir", self.data_dir, w)
        v.integer("split_seed", self.split_seed, None, where=w)


@dataclasses.dataclass(frozen=True)
class SineConfig(FamilyConfig):
    """:class:`lft.tasks.SineFamily`: sine regression (amplitude, phase and inputs drawn from
    the three ranges) for an MLP of ``hidden`` widths."""

    shots: int = 10
    val_points: int = 10
    test_points: int = 100
    amplitude: tuple[float, float] = (0.1, 5.0)
    phase: tuple[float, float] = (0.0, math.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)
    hidden: tuple[int, ...] = (40, 40)

    KIND = "sine"
    WHERE = "sine family"

    def check(self) -> None:
        w = self.WHERE
        for label in ("shots", "val_points", "test_points"):
            v.integer(label, getattr(self, label), 1, where=w)
        for label in ("amplitude", "phase", "x_range"):
            v.interval(label, getattr(self, label), w)
        for h in v.sequence("hidden", self.hidden, where=w):
            v.integer("hidden width", h, 1, 4096, w)


@dataclasses.dataclass(frozen=True)
class ClassificationConfig(FamilyConfig):
    """:class:`lft.tasks.ClassificationFamily`: ``ways``-way ``shots``-shot tasks of an image
    ``source`` for ``model``."""

    source: str = "mnist"
    model: str = "mlp"
    ways: int = 2
    shots: int = 5
    queries: int = 15
    part: str = "meta-train"
    data_dir: str | None = None
    split_seed: int = 0

    KIND = "classification"
    WHERE = "classification family"

    def check(self) -> None:
        if isinstance(self.model, str) and not self.model.startswith("<"):
            v.choice("classifier", self.model, MODELS, self.WHERE)
        v.integer("ways (classes per task)", self.ways, 2, where=self.WHERE)
        self._images()


@dataclasses.dataclass(frozen=True)
class UAPConfig(FamilyConfig):
    """:class:`lft.tasks.UAPFamily`: few-shot universal perturbations against ``victim``
    (``eps`` and ``norm``, a perturbation budget, are left out of the JSON without one)."""

    source: str = "mnist"
    victim: str = "default"
    lam: float = 0.01
    ways: int = 2
    shots: int = 5
    queries: int = 10
    kappa: float = 0.0
    init_scale: float = 0.05
    part: str = "meta-train"
    data_dir: str | None = None
    split_seed: int = 0
    pool: int | None = None
    eps: float | None = None
    norm: str = "2"

    KIND = "uap"
    WHERE = "UAP family"

    def check(self) -> None:
        w = self.WHERE
        check_budget(self.eps, self.norm, w)
        v.integer("ways", self.ways, 1, where=w)
        self._images()
        for label in ("lam", "kappa", "init_scale"):
            v.number(label, getattr(self, label), 0.0, where=w)
        if self.pool is not None:
            v.integer("pool (images per class, or None)", self.pool, 1, where=w)
        if isinstance(self.victim, str | Path):
            v.text("victim", str(self.victim), w)

    def omitted(self) -> set[str]:
        return {"eps", "norm"} if self.eps is None else set()


@dataclasses.dataclass(frozen=True)
class MixtureConfig(FamilyConfig):
    """:class:`lft.tasks.MixtureFamily`: tasks of the member ``families`` (typed
    configurations), member ``i`` drawn with probability ``weights[i]`` (``None``: uniform)."""

    families: tuple[FamilyConfig, ...]
    weights: tuple[float, ...] | None = None

    KIND = "mixture"
    WHERE = "mixture"
    NESTED = {"families": FamilyConfig}

    def check(self) -> None:
        members = self.families
        if not isinstance(members, tuple) or len(members) < 2:
            got = f"{len(members)}" if isinstance(members, tuple) else type(members).__name__
            raise ValueError("a mixture needs a list of at least two task families (TaskFamily "
                             f"objects or, through build_family, their configurations), got {got}")
        if self.weights is not None:
            weights = v.sequence("weights", self.weights, len(members), self.WHERE)
            if sum(v.number("weight", x, 0.0, where=self.WHERE) for x in weights) <= 0:
                raise ValueError(f"mixture weights must be {len(members)} non-negative numbers "
                                 f"with a positive sum, got {list(weights)}")


__all__ = ["FAMILIES", "ClassificationConfig", "FamilyConfig", "MixtureConfig", "SineConfig",
           "UAPConfig"]
