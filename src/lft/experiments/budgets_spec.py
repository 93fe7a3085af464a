"""The ``budgets`` artefact's specification: its sources and its profiles (typed, validated).

:mod:`lft.experiments.budgets` runs them; this module holds only what a run is asked to do.
"""

from __future__ import annotations

import dataclasses

from lft import validation
from lft.experiments.profiles import Profile, optional

ARTEFACT = "budgets"
#: meta-training source -> the test sources its learned rule is evaluated on
TRAIN = {"mnist": ("mnist",), "cifar10": ("cifar10",), "mnist+cifar10": ("mnist", "cifar10")}
TITLES = {"mnist": "MNIST, MLP", "cifar10": "CIFAR-10, Conv-4",
          "mnist+cifar10": "MNIST+CIFAR-10"}
METRICS = ("accuracy", "loss")

@dataclasses.dataclass(frozen=True)
class BudgetsProfile(Profile):
    """One profile of ``budgets`` (validated at construction; see
    :mod:`lft.experiments.profiles`).

    Attributes:
        budgets: the reported steps k (increasing); the last is the fine-tuning horizon.
        iterations, meta_batch, meta_lr, lr_decay: the learned rules' meta-training.
        meta_seeds: learned rules per training source, one meta-seed each.
        test_tasks: held-out test tasks per source; ``tune_tasks``: meta-training tasks
            Adam is tuned on, for every budget, from ``grid``.
        eval_chunk: test tasks run at once; ``workers``: worker processes.
        base_budget: the budget whose tuned Adam rate the residual rule's base starts at
            (default: the whole-horizon choice); one of ``budgets``.
        train: the training sources (default all of :data:`TRAIN`).
        schedule_init: training source -> where the residual rule's learned schedule starts
            (:class:`lft.rules.Scheduled` ``init``: one row of per-role multipliers per step;
            default 1 everywhere), chosen on meta-training tasks (``probes/budgets_weighting.py``).
        schedule_variants: training source -> ``{name: schedule start or None}``: meta-train
            one rule per variant (and meta-seed), and report at each budget ``k`` the variant
            with the highest mean accuracy at step ``k`` over its meta-seeds on
            ``select_tasks`` tasks drawn from meta-training images (the ``select`` stream):
            the learned rule chosen per budget, as Adam's rate is. Replaces ``schedule_init``
            for that source.
        select_tasks: meta-training tasks per variant for that choice (default
            ``tune_tasks``).
    """

    ARTEFACT = ARTEFACT

    budgets: list
    iterations: int
    meta_batch: int
    meta_seeds: int
    meta_lr: float
    lr_decay: float
    test_tasks: int
    tune_tasks: int
    grid: list
    eval_chunk: int
    workers: int
    base_budget: int | None = optional()
    train: list | None = optional()
    schedule_init: dict | None = optional()
    schedule_variants: dict | None = optional()
    select_tasks: int | None = optional()

    def __post_init__(self):
        self._steps("budgets")
        self._int("iterations", "meta_batch", "meta_seeds", "test_tasks", "tune_tasks",
                  "eval_chunk", "workers")
        self._number("meta_lr", "lr_decay")
        self._grid("grid")
        if self.base_budget is not None:
            validation.choice("base_budget", self.base_budget, self.budgets, where=self._where)
        if self.train is not None:
            self._choices("train", TRAIN)
        if self.schedule_init is not None:
            for source in validation.mapping("schedule_init", self.schedule_init, self._where):
                validation.choice("schedule_init source", source, TRAIN, where=self._where)
        if self.schedule_variants is not None:
            for source, named in validation.mapping("schedule_variants",
                                                    self.schedule_variants,
                                                    self._where).items():
                validation.choice("schedule_variants source", source, TRAIN,
                                  where=self._where)
                named = validation.mapping(f"schedule_variants[{source!r}]", named, self._where)
                if not named:
                    raise ValueError(f"{self._where}: schedule_variants[{source!r}] names no "
                                     "variant; give {name: schedule start or None}")
                for name, start in named.items():
                    if start is not None and not isinstance(start, list):
                        raise ValueError(
                            f"{self._where}: schedule_variants[{source!r}][{name!r}] must be "
                            f"a schedule start (rows of multipliers) or None, got {start!r}")
                if source in (self.schedule_init or {}):
                    raise ValueError(f"{self._where}: {source!r} has both a schedule_init and "
                                     "schedule_variants; give one (a variant may be the start)")
        if self.select_tasks is not None:
            self._int("select_tasks")


PROFILES: dict[str, BudgetsProfile] = {
    "quick": BudgetsProfile(
        budgets=[1, 2, 5], iterations=2, meta_batch=2, meta_seeds=2, meta_lr=3e-3,
        lr_decay=0.1, test_tasks=20, tune_tasks=10, grid=[0.001, 0.002, 0.004, 0.008],
        eval_chunk=10, workers=2),
    "paper": BudgetsProfile(
        budgets=[1, 2, 5, 10, 20], iterations=100, meta_batch=4, meta_seeds=3, meta_lr=3e-3,
        lr_decay=0.1, test_tasks=500, tune_tasks=100,
        grid=[0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064],
        eval_chunk=10, workers=2),
}
#: ``paper-mid``: the paper profile's CIFAR-10 rule with its base at the rate tuned for the
#: middle budget (k = 10) instead of the whole horizon: a faster start the learned schedule
#: can slow down later (on MNIST both choices are the same rate, 0.002)
PROFILES["paper-mid"] = dataclasses.replace(PROFILES["paper"], base_budget=10,
                                            train=["cifar10"])


def head_decay(times: float = 10.0) -> list[list[float]]:
    """A schedule start per step and role: 4x, 2x, 1x the base rate over steps 1-5, 6-10,
    11-20, and the last layer's roles (4, 5) ``times`` larger. Chosen on CIFAR-10
    meta-training tasks by ``probes/budgets_weighting.py`` (variant ``head10-decay``; Adam's
    rates tuned for 5, 10 and 20 steps were 4x, 2x and 1x the base, and Adam with the last
    layer's steps x10 had reached 63.9% after 10 steps against 57.5%, probes/cifar_plateau.py)."""
    return [[m] * 4 + [m * times] * 2 for m in [4.0] * 5 + [2.0] * 5 + [1.0] * 10]


#: ``paper-head``: the paper profile's CIFAR-10 rule with its schedule starting at
#: :func:`head_decay` instead of 1 (one more choice made on meta-training tasks only)
PROFILES["paper-head"] = dataclasses.replace(PROFILES["paper"], train=["cifar10"],
                                             schedule_init={"cifar10": head_decay()})

#: ``paper-per-k``: the CIFAR-10 rule meta-trained from both schedule starts, the flat one of
#: ``paper`` (which led Adam at 20 steps but trailed it at 5 and 10) and :func:`head_decay` of
#: ``paper-head`` (which led at 5 and 10 but not at 20); at each budget the table reports the
#: one with the higher accuracy on 200 meta-training tasks, as Adam's rate is tuned per budget
PROFILES["paper-per-k"] = dataclasses.replace(
    PROFILES["paper"], train=["cifar10"], select_tasks=200,
    schedule_variants={"cifar10": {"flat": None, "head-decay": head_decay()}})
