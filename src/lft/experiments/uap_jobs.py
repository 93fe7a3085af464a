"""The typed jobs of the UAP artefacts: Table 1's two phases and ``uap-rivals``.

:class:`Table1TuneJob` and :class:`Table1Job` are run by :mod:`lft.experiments.table1_jobs`,
:class:`UAPRivalsJob` by :mod:`lft.experiments.uap_rivals_jobs` (and
:mod:`lft.experiments.uap_blackbox`). Like :class:`lft.experiments.jobs.MethodJob` they are
frozen, picklable and checked once, at construction, with one ``ValueError`` naming the field;
``to_dict`` is the plain dict each job was before it was typed, so the job store's
description (:func:`lft.experiments.jobstore.describe`) and ``results.json`` are unchanged.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping

from lft import validation as v
from lft.experiments.jobs import TypedJob, check_family, check_record
from lft.experiments.profiles import optional, present_fields
from lft.experiments.table1_spec import ORACLES, SOURCES, TRAIN
from lft.experiments.uap_rivals_spec import ART_METHODS, TUNED, UAPRivalsProfile
from lft.meta.learners import MethodConfig
from lft.meta.trainer import TrainConfig


def _cfg(method, kind: str, w: str) -> MethodConfig:
    """The job's method; a ``learned`` job's must meta-learn, any other's must not."""
    cfg = MethodConfig.from_dict(method)
    learns = bool(cfg.learn_rule or cfg.learn_init)
    if learns != (kind == "learned"):
        what = "meta-learns" if learns else "meta-learns nothing"
        raise ValueError(f"{w}: method {cfg.name!r} {what}, which a {kind} job cannot run")
    return cfg


@dataclasses.dataclass(frozen=True)
class Table1TuneJob(TypedJob):
    """Table 1, phase 1: tune one hand-designed rule's step size (from ``grid``, on ``tasks``
    meta-training tasks, loss at ``record``'s steps) on one ``source`` at one lambda ``lam``
    (:func:`lft.experiments.table1_jobs.run_tune`). ``kind`` is ``"tune"``."""

    WHERE = "table1 tune job"

    kind: str
    label: str
    family: dict
    method: dict
    grid: list
    steps: int
    tasks: int
    seed: int
    source: str
    lam: float
    record: list
    estimate_s: float | None = optional()

    def __post_init__(self):
        w = self._where
        v.choice("kind", self.kind, ["tune"], w)
        v.text("label", self.label, w)
        check_family("family", self.family, w)
        _cfg(self.method, self.kind, w)
        if not isinstance(self.grid, list | tuple) or not self.grid:
            raise ValueError(f"{w}: grid must be a non-empty list of learning rates")
        for lr in self.grid:
            v.positive("grid learning rate", lr, w)
        v.integer("steps", self.steps, 1, where=w)
        v.integer("tasks", self.tasks, 1, where=w)
        v.integer("seed", self.seed, None, where=w)
        v.choice("source", self.source, SOURCES, w)
        v.number("lam", self.lam, 0.0, where=w)
        check_record(self.record, self.steps, w)
        if self.estimate_s is not None:
            v.number("estimate_s", self.estimate_s, 0.0, where=w)


@dataclasses.dataclass(frozen=True)
class Table1Job(TypedJob):
    """Table 1, phase 2: a learned method meta-trained on ``family`` (``kind`` ``"learned"``,
    with ``train``) or a hand-designed rule at its tuned step size ``lr`` (``"baseline"``, with
    ``sweep_lrs``: the step size tuned at each swept lambda), tested on ``tests`` (``test_tasks``
    per source, metrics at ``record``'s steps, steps to ``threshold`` ASR) at the chosen
    ``lam`` and on ``sweep`` (lambda key -> tests, ``sweep_tasks`` each, last step only)
    (:mod:`lft.experiments.table1_jobs`). ``train_source``, ``name`` and ``oracle`` key its
    table cells; ``estimate_s`` orders the work."""

    WHERE = "table1 job"

    kind: str
    label: str
    method: dict
    out: str
    steps: int
    test_tasks: int
    sweep_tasks: int
    seed: int
    test_seed: int
    lam: float
    train_source: str
    name: str
    oracle: str
    record: list
    threshold: float
    tests: dict
    sweep: dict = dataclasses.field(default_factory=dict)
    family: dict | None = optional()
    train: dict | None = optional()
    lr: float | None = optional()
    sweep_lrs: dict | None = optional()
    estimate_s: float | None = optional()

    def __post_init__(self):
        w = self._where
        v.choice("kind", self.kind, ["learned", "baseline"], w)
        v.text("label", self.label, w)
        cfg = _cfg(self.method, self.kind, w)
        v.text("out", self.out, w)
        for name in ("steps", "test_tasks", "sweep_tasks"):
            v.integer(name, getattr(self, name), 1, where=w)
        v.integer("seed", self.seed, None, where=w)
        v.integer("test_seed", self.test_seed, None, where=w)
        v.number("lam", self.lam, 0.0, where=w)
        v.choice("train_source", self.train_source, [*TRAIN, "none"], w)
        v.choice("oracle", self.oracle, ORACLES, w)
        for name, value in (("name", cfg.name), ("oracle", cfg.oracle_kind)):
            if getattr(self, name) != value:
                raise ValueError(f"{w}: {name} {getattr(self, name)!r} is not its method's "
                                 f"({value!r})")
        check_record(self.record, self.steps, w)
        v.number("threshold", self.threshold, 0.0, 1.0, low_open=True, where=w)
        for name, fam in v.mapping("tests", self.tests, w).items():
            check_family(f"tests[{name!r}]", fam, w)
        for lam, tests in v.mapping("sweep", self.sweep, w).items():
            for name, fam in v.mapping(f"sweep[{lam!r}]", tests, w).items():
                check_family(f"sweep[{lam!r}][{name!r}]", fam, w)
        learned = {"family": self.family, "train": self.train}
        baseline = {"lr": self.lr, "sweep_lrs": self.sweep_lrs}
        need, drop = (learned, baseline) if self.kind == "learned" else (baseline, learned)
        for name, value in need.items():
            if value is None:
                raise ValueError(f"{w}: a {self.kind} job needs {name}")
        for name, value in drop.items():
            if value is not None:
                raise ValueError(f"{w}: a {self.kind} job has no {name}; drop it")
        if self.kind == "learned":
            check_family("family", self.family, w)
            TrainConfig.from_dict(self.train)
        else:
            v.positive("lr", self.lr, w)
            lrs = v.mapping("sweep_lrs", self.sweep_lrs, w)
            for lam in self.sweep:
                v.positive(f"sweep_lrs[{lam!r}]", lrs.get(lam), w)
        if self.estimate_s is not None:
            v.number("estimate_s", self.estimate_s, 0.0, where=w)


@dataclasses.dataclass(frozen=True)
class UAPRivalsJob(TypedJob):
    """A ``uap-rivals`` job on one ``source`` under ``profile`` (the whole profile: its
    functions read most of it, and the job store's description has always held it):

    * ``select``: choose eps and tune on meta-training tasks (phase 1);
    * ``learned``: meta-train and test one learned ``method`` (a black-box profile's: ZO-LFT,
      no ``method``) with meta-seed ``meta_seed``;
    * ``fixed``: test the tuned rules and ART's attacks (``only`` those, default all);
    * ``rivals`` (black-box profiles): test the tuned ZO rivals (those on ``estimator``'s
      estimates, default all).

    Phase 2 jobs carry the source's phase-1 record, ``selection``.
    """

    WHERE = "uap-rivals job"

    profile: UAPRivalsProfile
    seed: int
    data_dir: str | None
    out: str
    kind: str
    source: str
    method: str | None = optional()
    meta_seed: int | None = optional()
    selection: dict | None = optional()
    only: list | None = optional()
    estimator: str | None = optional()

    @property
    def _where(self) -> str:
        return f"{self.WHERE} ({self.kind} {self.source})"

    def __post_init__(self):
        w, prof = self._where, self.profile
        if not isinstance(prof, UAPRivalsProfile):
            raise ValueError(f"{w}: profile must be a UAPRivalsProfile (read a dict with "
                             f"UAPRivalsProfile.from_dict), got {type(prof).__name__}")
        v.integer("seed", self.seed, None, where=w)
        v.path_or_none("data_dir", self.data_dir, w)
        v.text("out", self.out, w)
        black_box = prof.black_box is not None
        v.choice("kind", self.kind, ["select", "learned", "rivals" if black_box else "fixed"], w)
        v.choice("source", self.source, SOURCES, w)
        if (self.selection is None) != (self.kind == "select"):
            raise ValueError(f"{w}: a {self.kind} job "
                             + ("has no selection; drop it" if self.kind == "select" else
                                "needs selection (its source's phase-1 record)"))
        if self.selection is not None:
            v.mapping("selection", self.selection, w)
        learned = self.kind == "learned"
        methods = [] if black_box or not learned else ["lft", prof.residual]
        if methods:
            v.choice("method", self.method, methods, w)
        elif self.method is not None:
            raise ValueError(f"{w}: a {self.kind} job of a "
                             f"{'black-box' if black_box else 'white-box'} profile has no "
                             "method; drop it")
        if learned:
            v.integer("meta_seed", self.meta_seed, 0, prof.meta_seeds - 1, where=w)
        elif self.meta_seed is not None:
            raise ValueError(f"{w}: a {self.kind} job has no meta_seed; drop it")
        if self.only is not None:
            if self.kind != "fixed" or not isinstance(self.only, list | tuple) or not self.only:
                raise ValueError(f"{w}: only must be a non-empty list, on a fixed job")
            for name in self.only:
                v.choice("only entry", name, [*TUNED, *ART_METHODS], w)
        if self.estimator is not None and self.kind != "rivals":
            raise ValueError(f"{w}: only a rivals job runs the rivals of one estimator; drop "
                             "estimator")

    def to_dict(self) -> dict:
        """The job as a JSON-ready dict, its profile as :meth:`UAPRivalsProfile.to_dict`."""
        return {**copy.deepcopy({k: x for k, x in present_fields(self).items()
                                 if k != "profile"}), "profile": self.profile.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping) -> UAPRivalsJob:
        """A job from its :meth:`to_dict`; its ``profile`` through
        :meth:`UAPRivalsProfile.from_dict`."""
        d = v.mapping(f"a {cls.WHERE}", d)
        if isinstance(d.get("profile"), Mapping):
            d["profile"] = UAPRivalsProfile.from_dict(d["profile"])
        return super().from_dict(d)
