"""Gradient oracles: what the update rule is fed at each fine-tuning step.

An oracle is called as ``oracle(loss_fn, theta, generator)``, or with the memory it carries
from step to step as ``oracle.estimate(loss_fn, theta, generator, memory)``
(:mod:`lft.oracles.base`). ``queries_per_step`` is the loss evaluations an estimate costs.

=============  ====================================  ===========================================
type           class                                 what it returns
=============  ====================================  ===========================================
``fo``         :class:`FirstOrder`                   the gradient, by autograd
``zo``         :class:`ZerothOrder`                  random-direction estimate (Eq. 6): Gaussian,
                                                     Rademacher, sphere or orthogonal directions
``history``    :class:`HistorySubspace`              least squares, past estimates in the span
``guided``     :class:`GuidedES`                     Guided ES, search stretched along the past
``learned``    :class:`LearnedSampling`              meta-learned per-coordinate search scales
``subspace``   :class:`FittedSubspace`               the gradient's projection onto a basis
                                                     fitted on meta-training tasks
=============  ====================================  ===========================================

Every type but ``fo`` uses function values only: rows of results call them all ``oracle:
zo`` and name the estimator in their configuration.

A configuration is ``{"type": ..., **options}`` in JSON and a typed, checked
:class:`OracleConfig` in Python (:mod:`lft.oracles.configs`: one dataclass per type, whose
defaults are the type's; :data:`DEFAULT_FO` and :data:`DEFAULT_ZO` are the library's default
oracles); :func:`build_oracle` takes either.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from lft.oracles.base import FirstOrder, LossFn, Oracle, differences, plain_grad
from lft.oracles.configs import (
    DEFAULT_FO,
    DEFAULT_ZO,
    ORACLES,
    FirstOrderConfig,
    FittedSubspaceConfig,
    GuidedESConfig,
    HistorySubspaceConfig,
    LearnedSamplingConfig,
    OracleConfig,
    ZerothOrderConfig,
)
from lft.oracles.history import GuidedES, HistorySubspace
from lft.oracles.learned import LearnedSampling
from lft.oracles.random import DIRECTIONS, ZerothOrder
from lft.oracles.subspace import FittedSubspace, fit_basis, load_basis, save_basis


def build_oracle(config: OracleConfig | Mapping) -> Oracle:
    """Build an oracle from its typed configuration (:class:`OracleConfig`) or from
    ``{"type": ..., **options}`` (:data:`ORACLES`), which is read (and checked) by
    :meth:`OracleConfig.from_dict`: bad options raise ``ValueError``."""
    config = OracleConfig.of(config)
    try:
        return ORACLES[config.KIND](**config.options())
    except TypeError as e:
        raise ValueError(f"bad options for oracle {config.KIND!r}: {e}") from None


def is_zeroth_order(config: OracleConfig | Mapping) -> bool:
    """Whether an oracle configuration uses function values only (any type but ``fo``)."""
    return _json(config).get("type", "fo") != "fo"


def _json(config: OracleConfig | Mapping) -> Mapping:
    return config.to_dict() if isinstance(config, OracleConfig) else config


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row cosine similarity, for checking estimate quality."""
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1) + 1e-12)


__all__ = ["DEFAULT_FO", "DEFAULT_ZO", "DIRECTIONS", "ESTIMATORS", "FirstOrder",
           "FirstOrderConfig", "FittedSubspace", "FittedSubspaceConfig", "GuidedES",
           "GuidedESConfig", "HistorySubspace", "HistorySubspaceConfig", "LearnedSampling",
           "LearnedSamplingConfig", "LossFn", "ORACLES", "Oracle", "OracleConfig",
           "ZerothOrder", "ZerothOrderConfig", "at_budget", "build_oracle", "cosine",
           "differences", "estimator_name", "fit_basis", "is_zeroth_order", "load_basis",
           "plain_grad", "queries_per_step", "save_basis"]


def estimator_name(config: OracleConfig | Mapping) -> str:
    """A short name of the estimator an oracle configuration uses, for tables and rows:
    ``"gradient"``, ``"gaussian"`` (or the directions of a ``zo`` oracle), ``"history"``,
    ``"guided"``, ``"learned"`` or ``"subspace"``."""
    config = _json(config)
    kind = config.get("type", "fo")
    if kind == "fo":
        return "gradient"
    if kind == "zo":
        return config.get("directions", "gaussian")
    return kind


ESTIMATORS = ("gaussian", "orthogonal", "history", "guided", "learned", "subspace")


def at_budget(estimator: str, evaluations: int, mu: float = 0.005,
              basis: str | None = None) -> dict:
    """The configuration of zeroth-order ``estimator`` (one of :data:`ESTIMATORS`) spending
    ``evaluations`` loss evaluations per step, the base point included: forward differences
    along ``evaluations - 1`` directions (what ``--queries-per-step`` means everywhere).
    ``basis``: the file of a ``subspace`` estimator's fitted directions (its first
    ``evaluations - 1``)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose from {', '.join(ESTIMATORS)}")
    if not isinstance(evaluations, int) or isinstance(evaluations, bool) or evaluations < 2:
        raise ValueError(f"a zeroth-order step needs at least 2 loss evaluations (the base "
                         f"point and one direction), got {evaluations!r}")
    if (basis is not None) != (estimator == "subspace"):
        raise ValueError("a basis file goes with the subspace estimator, and the subspace "
                         "estimator needs one (fit it with lft.meta.fit_subspace)")
    if estimator in ("gaussian", "orthogonal"):
        return {"type": "zo", "q": evaluations - 1, "mu": mu, "directions": estimator,
                "scheme": "forward", "differentiable": False}
    if estimator == "subspace":
        return FittedSubspace(q=evaluations - 1, mu=mu, basis=basis).config()
    return {"type": estimator, "q": evaluations - 1, "mu": mu, "scheme": "forward"}


def queries_per_step(config: OracleConfig | Mapping, examples: int) -> int:
    """Oracle cost of one step in the results schema's units: loss evaluations of the
    fine-tuning set for a zeroth-order oracle (the base point included), the ``examples``
    back-propagated for the first-order one."""
    return build_oracle(config).queries_per_step if is_zeroth_order(config) else examples
