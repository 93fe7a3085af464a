"""The jobs of the reproductions as typed, validated specifications.

:class:`MethodJob` is what :func:`lft.experiments.runner.run_job` runs: meta-train (or tune the
learning rate of) one method, then evaluate it on held-out test tasks. Figure 4, Table 2 and
``budgets`` build their jobs as ``MethodJob``; the UAP artefacts (Table 1, ``uap-rivals``) build
theirs as the sibling typed jobs of :mod:`lft.experiments.uap_jobs`, on :class:`TypedJob`. The
fields are checked once, at construction, so a bad job fails where it was made with one
``ValueError`` naming the field, not in a worker process minutes later. A job is frozen and
picklable (it is shipped to the process pool).

A job's ``to_dict`` is its JSON (what ``results.json``'s ``config.jobs`` and the job store
record): the optional fields that are off are left out, so a job writes the same dict, and
:func:`lft.experiments.jobstore.describe` the same canonical JSON, as the plain dict it
replaced; records a killed run stored before the change are still reused on ``--resume``.
``from_dict`` reads it back (unknown keys are refused by name).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping

from lft import validation as v
from lft.experiments.profiles import check_fields, optional, present_fields
from lft.meta.learners import MethodConfig
from lft.meta.trainer import TrainConfig

_WHERE = "method job"


class TypedJob:
    """Base of the typed jobs (frozen dataclasses): JSON, validated copies, error prefix."""

    WHERE = "job"

    @property
    def _where(self) -> str:
        label = getattr(self, "label", None)
        return f"{self.WHERE} {label!r}" if isinstance(label, str) else self.WHERE

    def replace(self, **changes):
        """A copy with ``changes`` (validated again); unknown fields are refused by name."""
        check_fields(self._where, type(self), changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The job as a JSON-ready dict (a deep copy), without the optional fields that are
        off: the plain dict the job was before it was typed."""
        return copy.deepcopy(present_fields(self))

    @classmethod
    def from_dict(cls, d: Mapping):
        """A job from its :meth:`to_dict` (or JSON of it); unknown or bad fields raise
        ``ValueError``."""
        d = v.mapping(f"a {cls.WHERE}", d)
        check_fields(cls.WHERE, cls, d)
        return cls(**copy.deepcopy(d))


def check_family(name: str, family, where: str) -> None:
    """Refuse a ``family`` that is not a family configuration (a dict with a ``task``)."""
    if not isinstance(family, Mapping) or "task" not in family:
        raise ValueError(f"{where}: {name} must be a family configuration with a 'task' (e.g. "
                         "lft.tasks.named_family('sine').config())")


def check_record(record, steps: int, where: str) -> None:
    """Refuse a ``record`` that is not a non-empty list of steps in ``0..steps``."""
    if not isinstance(record, list | tuple) or not record:
        raise ValueError(f"{where}: record must be a non-empty list of steps")
    for k in record:
        v.integer("record step", k, 0, steps, where=where)


@dataclasses.dataclass(frozen=True)
class MethodJob(TypedJob):
    """One method to meta-train (or tune) and evaluate.

    Attributes:
        label: the job's name in tables and file names (unique within a run).
        family: the training family's configuration (:func:`lft.tasks.build_family`).
        method: the method's configuration (:meth:`lft.meta.MethodConfig.to_dict`).
        out: the run folder (checkpoints and logs go under it).
        steps: fine-tuning steps of the evaluation (and of learning-rate tuning).
        test_tasks: held-out test tasks per test family.
        seed: the run seed (method initialisation, tuning tasks).
        test_seed: the seed of the held-out test tasks and random starts.
        train: meta-training settings (:class:`lft.meta.TrainConfig` fields) of a method that
            meta-learns; ``None`` for one that does not (its ``tune`` or fixed rule is used).
        tune: ``{"grid": [learning rates], "tasks": n}``: tune a hand-designed rule's step
            size on meta-training tasks; ``None``: evaluate the rule as configured.
        tests: ``{name: family configuration}`` to test on instead of the training family.
        record: the steps measured on ``tests`` (default every step).
        init_from: a checkpoint whose learned initialisation the method starts from.
        after: the label of the job that must finish first (e.g. the one writing
            ``init_from``).
        estimate_s: single-worker seconds, used only to start long work first.
        eval_chunk: test tasks run at once (tuning: all at once when ``None``; tests: 250).
        select_tasks: also evaluate the method on this many tasks of each ``tests`` family
            drawn from its *meta-training* images (the ``select`` stream, which neither
            meta-training, tuning nor testing reads), at the ``record`` steps: what an
            artefact chooses between learned variants on, never reading a test task.
        train_source, meta_seed, variant, zo_rival, lr: annotations the artefact reads back
            from its jobs to build its rows; the runner ignores them.
    """

    label: str
    family: dict
    method: dict
    out: str
    steps: int
    test_tasks: int
    seed: int
    test_seed: int
    train: dict | None = optional()
    tune: dict | None = optional()
    tests: dict | None = optional()
    record: list | None = optional()
    init_from: str | None = optional()
    after: str | None = optional()
    estimate_s: float | None = optional()
    eval_chunk: int | None = optional()
    select_tasks: int | None = optional()
    train_source: str | None = optional()
    meta_seed: int | None = optional()
    variant: str | None = optional()
    zo_rival: str | None = optional()
    lr: float | None = optional()

    WHERE = _WHERE

    def __post_init__(self):
        w = self._where
        v.text("label", self.label, w)
        v.mapping("family", self.family, w)
        if "task" not in self.family:
            raise ValueError(f"{w}: family needs a 'task' (a family configuration, e.g. "
                             "lft.tasks.named_family('sine').config())")
        cfg = MethodConfig.from_dict(self.method)
        v.text("out", self.out, w)
        v.integer("steps", self.steps, 1, where=w)
        v.integer("test_tasks", self.test_tasks, 1, where=w)
        v.integer("seed", self.seed, None, where=w)
        v.integer("test_seed", self.test_seed, None, where=w)
        learned = cfg.learn_rule or cfg.learn_init
        if learned and self.train is None:
            raise ValueError(f"{w}: method {cfg.name!r} meta-learns, so the job needs train "
                             "(lft.meta.TrainConfig fields)")
        if not learned and self.train is not None:
            raise ValueError(f"{w}: method {cfg.name!r} meta-learns nothing; drop train (or "
                             "give tune to tune its learning rate)")
        if self.train is not None:
            TrainConfig.from_dict(self.train)
            if self.tune is not None:
                raise ValueError(f"{w}: give train or tune, not both")
        if self.tune is not None:
            tune = v.mapping("tune", self.tune, w)
            v.known_options(f"{w}: tune", tune, ["grid", "tasks"])
            grid = tune.get("grid")
            if not isinstance(grid, list | tuple) or not grid:
                raise ValueError(f"{w}: tune needs a non-empty 'grid' of learning rates")
            for lr in grid:
                v.positive("tune grid learning rate", lr, w)
            v.integer("tune tasks", tune.get("tasks"), 1, where=w)
        if self.tests is not None:
            for name, fam in v.mapping("tests", self.tests, w).items():
                if not isinstance(fam, Mapping) or "task" not in fam:
                    raise ValueError(f"{w}: tests[{name!r}] must be a family configuration "
                                     "with a 'task'")
        if self.record is not None:
            if self.tests is None:
                raise ValueError(f"{w}: record applies to tests; give tests or drop record")
            check_record(self.record, self.steps, w)
        if self.init_from is not None:
            v.text("init_from", self.init_from, w)
            if not cfg.learn_init:
                raise ValueError(f"{w}: init_from needs a method that learns its "
                                 "initialisation; drop init_from")
        if self.after is not None:
            v.text("after", self.after, w)
        if self.estimate_s is not None:
            v.number("estimate_s", self.estimate_s, 0.0, where=w)
        if self.eval_chunk is not None:
            v.integer("eval_chunk", self.eval_chunk, 1, where=w)
        if self.select_tasks is not None:
            v.integer("select_tasks", self.select_tasks, 1, where=w)
            if self.tests is None:
                raise ValueError(f"{w}: select_tasks applies to tests; give tests or drop "
                                 "select_tasks")
        if self.meta_seed is not None:
            v.integer("meta_seed", self.meta_seed, 0, where=w)
        if self.variant is not None:
            v.text("variant", self.variant, w)
        if self.lr is not None:
            v.positive("lr", self.lr, w)

    @property
    def learned(self) -> bool:
        """Whether the job meta-trains (it has ``train``)."""
        return self.train is not None

    def method_config(self) -> MethodConfig:
        """A fresh (mutable) :class:`~lft.meta.MethodConfig` of the job's method."""
        return MethodConfig.from_dict(self.method)

    def train_config(self) -> TrainConfig:
        """The job's :class:`~lft.meta.TrainConfig` (a job that meta-trains)."""
        if self.train is None:
            raise ValueError(f"{_WHERE} {self.label!r} does not meta-train (no train)")
        return TrainConfig.from_dict(self.train)


def as_dict(job) -> dict:
    """A job's fields as a dict: ``job.to_dict()`` for a typed job, the dict itself for a
    plain-dict one (a job's JSON, e.g. read back from ``results.json``)."""
    return job.to_dict() if hasattr(job, "to_dict") else job
