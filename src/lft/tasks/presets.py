"""Named task families, as the command line and the reproductions call them.

``sine`` needs no data; ``mnist`` (MLP 784-128-64-2) and ``cifar10`` (Conv-4) are the paper's
2-way 5-shot classification families, and ``mnist+cifar10`` mixes them in every meta-batch
(incongruous: the two models share no parameter shapes).
"""

from __future__ import annotations

from lft.tasks.base import TaskFamily

TASKS = ("sine", "mnist", "cifar10", "mnist+cifar10")


def family_config(name: str, data_dir: str | None = None, part: str = "meta-train",
                  ways: int = 2, shots: int = 5, queries: int = 15) -> dict:
    """The :func:`lft.tasks.build_family` configuration of a named family."""
    if name == "sine":
        return {"task": "sine"}

    def image(source: str, model: str) -> dict:
        return {"task": "classification", "source": source, "model": model, "ways": ways,
                "shots": shots, "queries": queries, "part": part, "data_dir": data_dir}

    if name == "mnist":
        return image("mnist", "mlp")
    if name == "cifar10":
        return image("cifar10", "conv4")
    if name == "mnist+cifar10":
        return {"task": "mixture", "families": [image("mnist", "mlp"),
                                                image("cifar10", "conv4")]}
    raise ValueError(f"unknown task {name!r}; choose from {list(TASKS)}")


def named_family(name: str, data_dir: str | None = None, **kwargs) -> TaskFamily:
    """Build the named family (see :data:`TASKS`)."""
    from lft.tasks import build_family

    return build_family(family_config(name, data_dir, **kwargs))


__all__ = ["TASKS", "family_config", "named_family"]
