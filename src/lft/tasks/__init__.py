"""Task families: what a fine-tuner is meta-trained and tested on."""

from __future__ import annotations

from lft.tasks.base import SPLITS, TaskBatch, TaskFamily, as_groups, mse
from lft.tasks.classification import ClassificationFamily
from lft.tasks.mixture import MixtureFamily
from lft.tasks.presets import TASKS, family_config, named_family
from lft.tasks.sine import SineFamily

FAMILIES: dict[str, type[TaskFamily]] = {"sine": SineFamily,
                                         "classification": ClassificationFamily,
                                         "mixture": MixtureFamily}


def build_family(config: dict) -> TaskFamily:
    """Build a family from ``{"task": name, **kwargs}`` (what :meth:`TaskFamily.config` returns)."""
    config = dict(config)
    name = config.pop("task", None)
    if name == "mixture" and "families" in config:
        config["families"] = [build_family(f) for f in config["families"]]
    if name not in FAMILIES:
        raise ValueError(f"unknown task family {name!r}; choose from {sorted(FAMILIES)}")
    try:
        return FAMILIES[name](**config)
    except TypeError as e:
        raise ValueError(f"bad options for task family {name!r}: {e}") from None


__all__ = ["FAMILIES", "SPLITS", "ClassificationFamily", "MixtureFamily", "SineFamily",
           "TASKS", "TaskBatch", "TaskFamily", "as_groups", "build_family", "family_config",
           "mse", "named_family"]
