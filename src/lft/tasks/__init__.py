"""Task families: what a fine-tuner is meta-trained and tested on."""

from __future__ import annotations

from lft import validation
from lft.tasks.base import SPLITS, TaskBatch, TaskFamily, as_groups, mse
from lft.tasks.classification import ClassificationFamily
from lft.tasks.mixture import MixtureFamily
from lft.tasks.presets import TASKS, family_config, named_family
from lft.tasks.sine import SineFamily
from lft.tasks.uap import UAPBatch, UAPFamily

FAMILIES: dict[str, type[TaskFamily]] = {"sine": SineFamily,
                                         "classification": ClassificationFamily,
                                         "mixture": MixtureFamily,
                                         "uap": UAPFamily}


def build_family(config: dict) -> TaskFamily:
    """Build a family from ``{"task": name, **kwargs}`` (what :meth:`TaskFamily.config` returns).

    Unknown names, unknown options and bad values raise one ``ValueError`` line.
    """
    config = validation.mapping("a task-family configuration", config)
    name = config.pop("task", None)
    if not isinstance(name, str) or name not in FAMILIES:
        raise ValueError(f"unknown task family {name!r}; choose from {sorted(FAMILIES)} "
                         '(e.g. {"task": "sine"})')
    validation.known_options(f"task family {name!r}", config,
                             validation.parameters_of(FAMILIES[name].__init__))
    if name == "mixture" and "families" in config:
        members = validation.sequence("families", config["families"], where="task family "
                                      "'mixture'")
        config["families"] = [build_family(f) for f in members]
    try:
        return FAMILIES[name](**config)
    except TypeError as e:
        raise ValueError(f"bad options for task family {name!r}: {e}") from None


__all__ = ["FAMILIES", "SPLITS", "ClassificationFamily", "MixtureFamily", "SineFamily",
           "TASKS", "TaskBatch", "TaskFamily", "UAPBatch", "UAPFamily", "as_groups",
           "build_family", "family_config", "mse", "named_family"]
