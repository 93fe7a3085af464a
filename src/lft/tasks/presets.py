"""Named task families, as the command line and the reproductions call them.

``sine`` needs no data; ``mnist`` (MLP 784-128-64-2) and ``cifar10`` (Conv-4) are the paper's
2-way 5-shot classification families, and ``mnist+cifar10`` mixes them in every meta-batch
(incongruous: the two models share no parameter shapes). ``uap-mnist``, ``uap-cifar10`` and
``uap-mnist+cifar10`` are the few-shot universal adversarial perturbation tasks of Table 1
(:class:`lft.tasks.UAPFamily`): 2 classes, 5 fine-tuning images per class, a perturbation of the
image's shape against the cached LeNet-5 victim of its source (trained on first use).
"""

from __future__ import annotations

from lft.tasks.base import TaskFamily

TASKS = ("sine", "mnist", "cifar10", "mnist+cifar10", "uap-mnist", "uap-cifar10",
         "uap-mnist+cifar10")
#: Families over an image source given with ``--source`` (a name or a user's path)
SOURCE_TASKS = ("classification", "uap")
#: UAP task settings of Table 1 (``lft.experiments.table1``), less what the arguments set
UAP_DEFAULTS = {"victim": "default", "lam": 0.01, "queries": 10}

#: The LSTM's steps are bounded by ``output_scale`` per coordinate. Sine regression wants
#: steps of order 1; the image classifiers' weights are of order 0.01-0.1 (tuned Adam takes
#: steps of 0.001-0.01), so image tasks bound the learned step at 0.01. In a 150-iteration
#: probe on meta-training tasks, 0.01 reached higher CIFAR-10 accuracy than 0.003 (67.1% vs
#: 66.3%) and 1.0 broke the MLP at the first step.
IMAGE_RULE = {"output_scale": 0.01}

#: Learned-rule settings each named family wants (``lft train`` and Table 2 apply them)
RULE_DEFAULTS = {"mnist": IMAGE_RULE, "cifar10": IMAGE_RULE, "mnist+cifar10": IMAGE_RULE,
                 "classification": IMAGE_RULE}


def family_config(name: str, data_dir: str | None = None, part: str = "meta-train",
                  ways: int = 2, shots: int = 5, queries: int | None = None,
                  lam: float | None = None, eps: float | None = None,
                  norm: str = "2") -> dict:
    """The :func:`lft.tasks.build_family` configuration of a named family.

    ``queries`` (validation images per class) defaults to 15 for classification and to 10 for
    UAP tasks (which draw as many test images again); ``lam`` (UAP only, default 0.01) weighs
    ``||delta||_2^2`` in the UAP loss. ``eps`` and ``norm`` (UAP only) set a perturbation
    budget ``||delta||_2 <= eps`` (``norm="2"``) or ``|delta_i| <= eps`` (``"inf"``) on every
    part of the family; without ``eps`` the configuration is the one of before budgets existed.
    """
    from lft.tasks.uap import check_budget

    eps, norm = check_budget(eps, norm, f"task {name!r}")
    if eps is not None and not name.startswith("uap-"):
        raise ValueError(f"task {name!r}: eps (a perturbation budget) applies to UAP tasks "
                         f"only; fix: choose one of {[t for t in TASKS if t.startswith('uap-')]}"
                         " or drop eps")
    if name == "sine":
        return {"task": "sine"}
    if name.startswith("uap-"):
        if name not in TASKS:
            raise ValueError(f"unknown task {name!r}; choose from {list(TASKS)}")
        uap = {**UAP_DEFAULTS, "ways": ways, "shots": shots, "part": part,
               "data_dir": data_dir, **({} if queries is None else {"queries": queries}),
               **({} if lam is None else {"lam": lam}),
               **({} if eps is None else {"eps": eps, "norm": norm})}
        sources = name[len("uap-"):].split("+")
        if len(sources) == 1:
            return {"task": "uap", "source": sources[0], **uap}
        return {"task": "mixture", "families": [{"task": "uap", "source": s, **uap}
                                                for s in sources]}
    queries = 15 if queries is None else queries

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


def with_data_dir(config, data_dir: str | None):
    """A family configuration (a copy) with every ``data_dir`` (mixtures included) set to
    ``data_dir``; ``None`` makes it find its data as any command does (``$LFT_DATA_DIR``, the
    user cache), which is what a file that travels to another machine should hold."""
    if isinstance(config, dict):
        return {k: (data_dir if k == "data_dir" else with_data_dir(v, data_dir))
                for k, v in config.items()}
    if isinstance(config, list):
        return [with_data_dir(v, data_dir) for v in config]
    return config


def named_family(name: str, data_dir: str | None = None, **kwargs) -> TaskFamily:
    """Build the named family (see :data:`TASKS`)."""
    from lft.tasks import build_family

    return build_family(family_config(name, data_dir, **kwargs))


__all__ = ["IMAGE_RULE", "RULE_DEFAULTS", "SOURCE_TASKS", "TASKS", "UAP_DEFAULTS", "family_config",
           "named_family", "with_data_dir"]
