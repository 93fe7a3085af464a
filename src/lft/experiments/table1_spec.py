"""Table 1's specification: sources, the paper's numbers, profiles, task configurations.

The leaf of the Table 1 modules (:mod:`lft.experiments.table1` runs the artefact,
:mod:`~lft.experiments.table1_report` writes it, :mod:`~lft.experiments.table1_costs` prices
its jobs); it imports none of them, so their imports form a DAG.
"""

from __future__ import annotations

import dataclasses

import torch

from lft import validation
from lft.data.sources import SOURCES
from lft.experiments.profiles import Profile
from lft.meta.evaluate import sparse_steps

ARTEFACT = "table1"
TESTS = ("mnist", "cifar10", "mnist+cifar10")
TRAIN = ("mnist", "mnist+cifar10")
BASELINES = ("signsgd", "adam", "sgd")
METRICS = ("asr", "distortion", "l2")
THRESHOLD = 0.75
NOT_APPLICABLE = ("not applicable: MAML meta-learns one initial perturbation, and MNIST "
                  "(1x28x28) and CIFAR-10 (3x32x32) perturbations differ in shape")

#: The paper's Table 1: (ASR %, l2 distortion as printed, steps to threshold or None = N/A).
#: The mix cell of LFT [mnist+cifar10] is printed "0.89", presumably 0.089.
PAPER: dict[tuple[str, str], dict[str, tuple[float, float, int | None]]] = {
    ("mnist", "maml"): {"mnist": (52, 0.14, None)},
    ("mnist", "l2o"): {"mnist": (85, 0.116, 122), "cifar10": (0, 0.05, None),
                       "mnist+cifar10": (25, 0.072, None)},
    ("mnist", "lft"): {"mnist": (100, 0.104, 55), "cifar10": (25, 0.055, None),
                       "mnist+cifar10": (50, 0.079, None)},
    ("mnist+cifar10", "l2o"): {"mnist": (77, 0.112, 125), "cifar10": (95, 0.069, 72),
                               "mnist+cifar10": (92, 0.096, 93)},
    ("mnist+cifar10", "lft"): {"mnist": (93, 0.101, 92), "cifar10": (100, 0.063, 55),
                               "mnist+cifar10": (100, 0.089, 68)},
}

def lam_key(lam: float) -> str:
    """A lambda as the key of a results dict (``0.001``, ``1e-05``)."""
    return f"{lam:g}"


#: the learned methods (meta-training budgets), the oracles, the lambda selection criteria
LEARNED = ("lft", "l2o", "maml")
ORACLES = ("fo", "zo")
CRITERIA = ("min_asr", "max_distortion")


@dataclasses.dataclass(frozen=True)
class Table1Profile(Profile):
    """One profile of Table 1 (validated at construction; see :mod:`lft.experiments.profiles`).

    Attributes:
        victim: the victims (``"quick"``, ``"default"`` or a checkpoint); ``pool``: images per
            class (``None``: all); ``queries``: test images per class and task.
        steps: fine-tuning steps K; ``truncation``: the learned rules' truncated unroll.
        lams: the lambda grid; ``select``: how one lambda is chosen from tuned
            ``select["method"]`` (one of :data:`BASELINES`) with exactly one criterion,
            ``min_asr`` or ``max_distortion`` (:func:`lft.experiments.table1.select_lambda`).
        record: metrics at steps ``0..record["dense"]`` and every ``record["every"]``-th.
        iterations, meta_lr: per learned method (``lft``, ``l2o``, ``maml``); ``meta_batch``,
            ``lr_decay``: their meta-training; ``oracles``: of ``fo``, ``zo``.
        test_tasks: test tasks per source at the chosen lambda; ``sweep_tasks``: at each other
            one; ``tune_tasks``: meta-training tasks the rules are tuned on, from ``lr_grid``
            (per rule of :data:`BASELINES`).
        maml_inner: MAML's inner loop, ``{"lr": step size, "steps": n}``.
        pictures: test tasks drawn in ``perturbations.png``; ``workers``: worker processes.
    """

    ARTEFACT = ARTEFACT

    victim: str
    pool: int | None
    queries: int
    steps: int
    truncation: int | None
    lams: list
    select: dict
    record: dict
    iterations: dict
    meta_batch: int
    meta_lr: dict
    lr_decay: float
    oracles: list
    test_tasks: int
    sweep_tasks: int
    tune_tasks: int
    lr_grid: dict
    maml_inner: dict
    pictures: int
    workers: int

    def __post_init__(self):
        w = self._where
        validation.text("victim", self.victim, w)
        self._int("queries", "steps", "meta_batch", "test_tasks", "sweep_tasks", "tune_tasks",
                  "pictures", "workers")
        for name in ("pool", "truncation"):
            if getattr(self, name) is not None:
                self._int(name)
        self._grid("lams", what="lambdas")
        if len({lam_key(x) for x in self.lams}) != len(self.lams):
            raise ValueError(f"{w}: lams must not repeat a lambda, got {self.lams!r}")
        select = self._keys("select", ["method"], ["method", *CRITERIA])
        validation.choice("select method", select["method"], BASELINES, w)
        if sum(c in select for c in CRITERIA) != 1:
            raise ValueError(f"{w}: select needs exactly one of {', '.join(CRITERIA)}; got "
                             f"{sorted(select)}")
        if "min_asr" in select:
            validation.number("select min_asr", select["min_asr"], 0.0, 1.0, low_open=True,
                              where=w)
        else:
            validation.positive("select max_distortion", select["max_distortion"], w)
        self._record()
        self._int_values("iterations", LEARNED, exact=True)
        self._number_values("meta_lr", LEARNED, exact=True)
        self._number("lr_decay")
        self._choices("oracles", ORACLES)
        self._grids("lr_grid", BASELINES, exact=True)
        inner = self._keys("maml_inner", ["lr", "steps"], ["lr", "steps"])
        validation.positive("maml_inner lr", inner["lr"], w)
        validation.integer("maml_inner steps", inner["steps"], 1, where=w)


#: Each profile: victims, task sizes, the lambda grid and selection criterion, tuning,
#: meta-training budget, test tasks (``test_tasks`` per source at the chosen lambda,
#: ``sweep_tasks`` per source at each other lambda), recorded steps. The paper profile picks
#: the least-distortion lambda at which tuned Adam reaches 90% ASR on every source (the paper
#: reports 93-100% ASR); its cost, job by job, is in :mod:`lft.experiments.table1_costs`.
PROFILES: dict[str, Table1Profile] = {
    "quick": Table1Profile(
        victim="quick", pool=200, queries=5, steps=20, truncation=10, lams=[0.003, 0.03],
        select={"method": "adam", "max_distortion": 0.3}, record={"dense": 5, "every": 5},
        iterations={"lft": 8, "l2o": 8, "maml": 8}, meta_batch=4,
        meta_lr={"lft": 3e-3, "l2o": 3e-3, "maml": 1e-3}, lr_decay=0.1, oracles=["fo"],
        test_tasks=20, sweep_tasks=10, tune_tasks=8,
        lr_grid={"signsgd": [0.005, 0.02], "adam": [0.005, 0.02], "sgd": [0.3, 1.0]},
        maml_inner={"lr": 0.5, "steps": 1}, pictures=3, workers=2),
    "paper": Table1Profile(
        victim="default", pool=None, queries=10, steps=200, truncation=20,
        lams=[0.0003, 0.001, 0.003, 0.01, 0.03], select={"method": "adam", "min_asr": 0.9},
        record={"dense": 10, "every": 5}, iterations={"lft": 100, "l2o": 100, "maml": 300},
        meta_batch=8, meta_lr={"lft": 3e-3, "l2o": 3e-3, "maml": 1e-3}, lr_decay=0.1,
        oracles=["fo"], test_tasks=500, sweep_tasks=100, tune_tasks=16,
        lr_grid={"signsgd": [0.03, 0.1, 0.3], "adam": [0.03, 0.1, 0.3],
                 "sgd": [1.0, 3.0, 10.0]},
        maml_inner={"lr": 0.5, "steps": 5}, pictures=4, workers=2),
}


def uap_config(source: str, prof: Table1Profile, data_dir: str | None, lam: float) -> dict:
    """The family configuration of UAP tasks on ``source`` (or the two-source mix)."""
    if source == "mnist+cifar10":
        return {"task": "mixture", "families": [uap_config(s, prof, data_dir, lam)
                                                for s in SOURCES]}
    return {"task": "uap", "source": source, "victim": prof.victim, "lam": lam,
            "shots": 5, "queries": prof.queries, "pool": prof.pool, "data_dir": data_dir}


def record_steps(prof: Table1Profile) -> list[int]:
    """The steps at which the table's metrics are recorded."""
    return sparse_steps(prof.steps, prof.record["every"], prof.record["dense"])


def steps_summary(first_hit: torch.Tensor) -> tuple[float | None, int]:
    """Steps to first reach 75% ASR, averaged over the tasks that do, and how many do."""
    hit = ~torch.isnan(first_hit)
    return (float(first_hit[hit].mean()) if hit.any() else None), int(hit.sum())
