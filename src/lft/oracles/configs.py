"""Gradient-oracle configurations, typed: one frozen dataclass per oracle type.

``{"type": "zo", "q": 10}`` is read by :meth:`OracleConfig.from_dict` as
``ZerothOrderConfig(q=10)`` (checked once) and written back by ``to_dict()`` as it was given;
:func:`lft.oracles.build_oracle` takes either. Each dataclass's fields are its oracle class's
constructor options, with the same defaults: the defaults of a type.

The library's default oracles (method presets, ``lft train --zo``, the ``torch.optim``
drop-in, ``lft attack --black-box``) are :data:`DEFAULT_FO` and :data:`DEFAULT_ZO`. The one
way the defaults differ: ``DEFAULT_ZO`` uses central (``antithetic``) differences, while a
``zo`` configuration that names no ``scheme`` gets forward differences, the ``zo`` type's
default (the budget-matched rivals of Table 1 and ``at_budget`` rely on it).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from lft import validation as v
from lft.oracles.base import SCHEMES, FirstOrder
from lft.oracles.history import GuidedES, HistorySubspace
from lft.oracles.learned import LearnedSampling
from lft.oracles.random import DIRECTIONS, ZerothOrder
from lft.oracles.subspace import FittedSubspace
from lft.typed import TypedConfig

#: oracle type -> class
ORACLES = {"fo": FirstOrder, "zo": ZerothOrder, "history": HistorySubspace, "guided": GuidedES,
           "learned": LearnedSampling, "subspace": FittedSubspace}


@dataclasses.dataclass(frozen=True)
class OracleConfig(TypedConfig):
    """Base of the oracle configurations: ``OracleConfig.from_dict({"type": ..., ...})``
    reads any type (``fo``, ``zo``, ``history``, ``guided``, ``learned``, ``subspace``)."""

    KINDS: ClassVar[dict] = {}
    TARGETS: ClassVar[dict] = ORACLES
    WHAT: ClassVar[str] = "gradient oracle"
    NAME: ClassVar[str] = "a gradient-oracle configuration"

    @classmethod
    def unknown(cls, kind: object) -> str:
        kinds = sorted(cls.kinds())
        if cls is not OracleConfig:
            return f"unknown gradient oracle {kind!r}; choose from {kinds}"
        return (f"unknown gradient oracle {kind!r}; choose 'fo' (gradients) or one of "
                f"{sorted(set(kinds) - {'fo'})} (function values only)")

    @property
    def zeroth_order(self) -> bool:
        """Whether the oracle uses function values only (any type but ``fo``)."""
        return self.KIND != "fo"

    def _differences(self) -> None:
        """The options every finite-difference oracle has: ``q``, ``mu``, ``scheme``."""
        v.integer("q (directions per step)", self.q, 1, where=self.WHERE)
        v.positive("smoothing radius mu", self.mu, self.WHERE)
        v.choice("scheme", self.scheme, SCHEMES, self.WHERE)


@dataclasses.dataclass(frozen=True)
class FirstOrderConfig(OracleConfig):
    """:class:`lft.oracles.FirstOrder`: the gradient, with its Hessian term if
    ``second_order``."""

    second_order: bool = False

    KIND = "fo"
    WHERE = "first-order oracle"

    def check(self) -> None:
        v.boolean("second_order", self.second_order, self.WHERE)


@dataclasses.dataclass(frozen=True)
class ZerothOrderConfig(OracleConfig):
    """:class:`lft.oracles.ZerothOrder`: ``q`` random directions (``directions``) per step."""

    q: int = 20
    mu: float = 0.005
    directions: str = "gaussian"
    scheme: str = "forward"
    differentiable: bool = False

    KIND = "zo"
    WHERE = "zeroth-order oracle"

    def check(self) -> None:
        self._differences()
        v.choice("directions", self.directions, DIRECTIONS, self.WHERE)
        v.boolean("differentiable", self.differentiable, self.WHERE)


@dataclasses.dataclass(frozen=True)
class HistorySubspaceConfig(OracleConfig):
    """:class:`lft.oracles.HistorySubspace`: least squares with the last ``m`` estimates in
    the span of the ``q`` directions."""

    q: int = 20
    m: int = 3
    mu: float = 0.005
    scheme: str = "forward"

    KIND = "history"
    WHERE = "history-subspace oracle"

    def check(self) -> None:
        self._differences()
        v.integer("m (past estimates in the span)", self.m, 0, int(self.q) - 1, where=self.WHERE)


@dataclasses.dataclass(frozen=True)
class GuidedESConfig(OracleConfig):
    """:class:`lft.oracles.GuidedES`: a share ``1 - alpha`` of the search along the last ``k``
    estimates."""

    q: int = 20
    k: int = 2
    alpha: float = 0.5
    mu: float = 0.005
    scheme: str = "forward"

    KIND = "guided"
    WHERE = "guided-ES oracle"

    def check(self) -> None:
        self._differences()
        v.integer("k (past estimates guiding the search)", self.k, 1, where=self.WHERE)
        v.number("alpha (isotropic share)", self.alpha, 0.0, 1.0, where=self.WHERE)


@dataclasses.dataclass(frozen=True)
class LearnedSamplingConfig(OracleConfig):
    """:class:`lft.oracles.LearnedSampling`: meta-learned per-coordinate search scales."""

    q: int = 20
    mu: float = 0.005
    scheme: str = "forward"
    hidden: int = 8
    beta: float = 0.9

    KIND = "learned"
    WHERE = "learned-sampling oracle"

    def check(self) -> None:
        self._differences()
        v.integer("hidden (network width)", self.hidden, 1, where=self.WHERE)
        v.number("beta (running-mean decay)", self.beta, 0.0, 1.0, high_open=True,
                 where=self.WHERE)


@dataclasses.dataclass(frozen=True)
class FittedSubspaceConfig(OracleConfig):
    """:class:`lft.oracles.FittedSubspace`: the ``q`` leading directions of a fitted basis
    (the file ``basis``, or tensors a checkpoint carries, for optimisees of ``dim``)."""

    q: int = 20
    dim: int | None = None
    mu: float = 0.005
    scheme: str = "forward"
    basis: str | None = None

    KIND = "subspace"
    WHERE = "fitted-subspace oracle"

    def check(self) -> None:
        self._differences()
        v.path_or_none("basis", self.basis, self.WHERE)
        if self.dim is not None or self.basis is None:  # else the basis file tells
            v.integer("dim (optimisee size; or a basis file)", self.dim, int(self.q),
                      where=self.WHERE)


#: the default first-order oracle: the gradient as a constant input (no Hessian term)
DEFAULT_FO = FirstOrderConfig()
#: the default zeroth-order oracle of the library: 20 Gaussian directions, central differences
#: (``antithetic``, 40 loss evaluations a step); the ``zo`` type's own default is ``forward``
DEFAULT_ZO = ZerothOrderConfig(scheme="antithetic")

__all__ = ["DEFAULT_FO", "DEFAULT_ZO", "FirstOrderConfig", "FittedSubspaceConfig",
           "GuidedESConfig", "HistorySubspaceConfig", "LearnedSamplingConfig", "ORACLES",
           "OracleConfig", "ZerothOrderConfig"]
