"""Task families: what a fine-tuner is meta-trained and tested on.

A family's configuration is ``{"task": ..., **options}`` in JSON and a typed, checked
:class:`FamilyConfig` in Python (:mod:`lft.tasks.configs`: one dataclass per family, whose
defaults are the family's); :func:`build_family` takes either.
"""

from __future__ import annotations

from collections.abc import Mapping

from lft.tasks.base import SPLITS, TaskBatch, TaskFamily, as_groups, mse
from lft.tasks.classification import ClassificationFamily
from lft.tasks.configs import (
    FAMILIES,
    ClassificationConfig,
    FamilyConfig,
    MixtureConfig,
    SineConfig,
    UAPConfig,
)
from lft.tasks.mixture import MixtureFamily
from lft.tasks.presets import TASKS, family_config, named_family
from lft.tasks.sine import SineFamily
from lft.tasks.uap import UAPBatch, UAPFamily


def build_family(config: FamilyConfig | Mapping) -> TaskFamily:
    """Build a family from its typed configuration (:class:`FamilyConfig`) or from ``{"task":
    name, **kwargs}`` (what :meth:`TaskFamily.config` returns).

    A dict is read by :meth:`FamilyConfig.from_dict`: unknown names, unknown options and bad
    values raise one ``ValueError`` line.
    """
    config = FamilyConfig.of(config)
    options = config.options()
    if isinstance(config, MixtureConfig):
        options["families"] = [build_family(f) for f in config.families]
    try:
        return FAMILIES[config.KIND](**options)
    except TypeError as e:
        raise ValueError(f"bad options for task family {config.KIND!r}: {e}") from None


__all__ = ["FAMILIES", "SPLITS", "TASKS", "ClassificationConfig",
           "ClassificationFamily", "FamilyConfig", "MixtureConfig", "MixtureFamily", "SineConfig",
           "SineFamily", "TaskBatch", "TaskFamily", "UAPBatch", "UAPConfig", "UAPFamily",
           "as_groups", "build_family", "family_config", "mse", "named_family"]
