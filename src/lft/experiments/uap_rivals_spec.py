"""``uap-rivals``' specification: sources, methods, profiles, task configurations.

The leaf of the uap-rivals modules (:mod:`~lft.experiments.uap_rivals_jobs` runs its jobs,
:mod:`~lft.experiments.uap_blackbox` its black-box profiles,
:mod:`~lft.experiments.uap_rivals_report` writes it, :mod:`~lft.experiments.uap_rivals` is the
artefact); it imports none of them.
"""

from __future__ import annotations

import dataclasses

from lft import validation
from lft.data.sources import SOURCES
from lft.experiments import zo_rivals
from lft.experiments.profiles import Profile, optional
from lft.meta.evaluate import sparse_steps
from lft.meta.objective import check_weighting
from lft.tasks.uap_loss import NORMS

ARTEFACT = "uap-rivals"
RESIDUALS = ("lft+signsgd", "lft+sgd", "lft+adam")
TUNED = ("pgd", "adam", "sgd")
#: a tuned method's row name -> the hand-designed preset it runs, and back for residual bases
RULE_OF = {"pgd": "signsgd", "adam": "adam", "sgd": "sgd"}
ROW_OF = {rule: row for row, rule in RULE_OF.items()}
ART_METHODS = ("art-pgd", "art-fgsm")
#: every method, in the order of the tables and of the paired differences (earlier - later)
METHODS = ("lft", *RESIDUALS, *TUNED, *ART_METHODS)

#: the meta-training budgets' entries, and each ART attacker's settings
BUDGETS = ("lft", "residual")
ART_SETTINGS = {"pgd": ("step_fraction", "pgd_iter"), "fgsm": ("step_fraction",)}
BLACK_BOX = ("oracles", "oracle", "budgets", "rules", "iterations", "meta_batch", "meta_lr")
#: a black-box part's optional entries: ZO-LFT's ``method`` (``lft``, default, or a residual
#: rule) and the fitted query basis' ``subspace`` settings (``q`` directions, ``tasks``)
BLACK_BOX_OPTIONAL = ("method", "subspace", "weighting")
#: an oracle entry of a black-box part naming the basis fitted per source on meta-training
#: tasks (:func:`lft.meta.fit_subspace`, settings in the part's ``subspace``)
SUBSPACE = "subspace"


@dataclasses.dataclass(frozen=True)
class UAPRivalsProfile(Profile):
    """One profile of ``uap-rivals`` (validated at construction; see
    :mod:`lft.experiments.profiles`).

    Attributes:
        victim, pool, queries: the victims, images per class (``None``: all), test images
            per class and task; ``steps``: fine-tuning steps; ``record``: metrics at steps
            ``0..record["dense"]`` and every ``record["every"]``-th.
        norm: the budget's norm (``"2"`` or ``"inf"``); ``eps_grid``: per source, the radii
            searched for the one where the reference attack's ASR is in ``target_asr``
            (``[low, high]``).
        tune_tasks: meta-training tasks every tuning reads; ``lr_grid``: step sizes per tuned
            rule (:data:`TUNED`); ``art``: ART's ``max_iter`` and ``delta`` and a list of
            settings per attacker (``pgd``: ``step_fraction``, ``pgd_iter``; ``fgsm``:
            ``step_fraction``), see :func:`art_kwargs`.
        residual: the residual learned rule (:data:`RESIDUALS`); ``iterations`` and
            ``meta_lr``: one entry for ``lft`` and one for ``residual``; ``meta_batch``,
            ``truncation`` (``None``: the whole unroll), ``lr_decay``: meta-training.
        meta_seeds: learned methods meta-trained this many times; ``test_tasks``: held-out
            tasks per source, run ``eval_chunk`` at once; ``workers``: worker processes.
        kappa: the C&W confidence of the fine-tuners' loss (``None``: 0, left out).
        weighting: the meta-loss's step weights per learned method (``"lft"``,
            ``"residual"``; :func:`lft.meta.objective.check_weighting`; ``None`` or a method
            left out: ``uniform``, every step alike).
        widen: how many times every step-size tuning (white-box rules and ZO rivals) may
            halve or double its grid while the best rate is on the grid's edge
            (:func:`lft.meta.evaluate.tune_learning_rate`; ``None``: never), so no rival is
            weakened by its grid.
        black_box: a black-box profile's ZO part (:mod:`lft.experiments.uap_blackbox`):
            ``oracles`` of the rivals, ZO-LFT's ``oracle`` (an oracle entry may be
            :data:`SUBSPACE`), ``budgets`` (steps), ``rules`` (of
            :data:`lft.experiments.zo_rivals.RULES`), ZO-LFT's ``iterations``, ``meta_batch``
            and ``meta_lr``, optionally its ``method``, its meta-loss's step ``weighting``
            (:func:`lft.meta.objective.check_weighting`; default ``uniform``) and the
            ``subspace`` fit's ``q`` and ``tasks``; ``None``: a white-box profile.
    """

    ARTEFACT = ARTEFACT

    victim: str
    pool: int | None
    queries: int
    steps: int
    record: dict
    norm: str
    eps_grid: dict
    target_asr: list
    tune_tasks: int
    lr_grid: dict
    art: dict
    residual: str
    iterations: dict
    meta_batch: int
    truncation: int | None
    meta_lr: dict
    lr_decay: float
    meta_seeds: int
    test_tasks: int
    eval_chunk: int
    workers: int
    kappa: float | None = optional()
    black_box: dict | None = optional()
    widen: int | None = optional()
    weighting: dict | None = optional()

    def __post_init__(self):
        w = self._where
        validation.text("victim", self.victim, w)
        self._int("queries", "steps", "tune_tasks", "meta_batch", "meta_seeds", "test_tasks",
                  "eval_chunk", "workers")
        for name in ("pool", "truncation"):
            if getattr(self, name) is not None:
                self._int(name)
        self._record()
        self._choice("norm", NORMS)
        self._grids("eps_grid", SOURCES, exact=True, what="radii")
        low, high = validation.interval("target_asr", self.target_asr, w)
        if not 0 <= low <= high <= 1:
            raise ValueError(f"{w}: target_asr must be [low, high] within [0, 1], got "
                             f"{self.target_asr!r}")
        self._grids("lr_grid", TUNED, exact=True)
        art = self._keys("art", ["max_iter", "delta", *ART_SETTINGS],
                         ["max_iter", "delta", *ART_SETTINGS])
        validation.integer("art max_iter", art["max_iter"], 1, where=w)
        validation.number("art delta", art["delta"], 0.0, 1.0, high_open=True, where=w)
        for attacker, keys in ART_SETTINGS.items():
            settings = validation.sequence(f"art {attacker}", art[attacker], where=w)
            if not settings:
                raise ValueError(f"{w}: art {attacker} must be a non-empty list of settings")
            for setting in settings:
                self._keys(f"art {attacker} setting", ["step_fraction"], keys, setting)
                validation.positive("art step_fraction", setting["step_fraction"], w)
                if "pgd_iter" in setting:
                    validation.integer("art pgd_iter", setting["pgd_iter"], 1, where=w)
        self._choice("residual", RESIDUALS)
        self._int_values("iterations", BUDGETS, exact=True)
        self._number_values("meta_lr", BUDGETS, exact=True)
        self._number("lr_decay")
        if self.kappa is not None:
            self._number("kappa", open_low=False)
        if self.widen is not None:
            self._int("widen", low=0)
        if self.weighting is not None:
            for name, value in self._keys("weighting", [], BUDGETS).items():
                check_weighting(value, where=f"{w}: weighting {name}")
        if self.black_box is not None:
            self._check_black_box()

    def _check_black_box(self) -> None:
        w = self._where
        bb = self._keys("black_box", BLACK_BOX, (*BLACK_BOX, *BLACK_BOX_OPTIONAL))
        parts = {name: validation.sequence(f"black_box {name}", bb[name], where=w)
                 for name in ("oracles", "budgets", "rules")}
        for name, values in parts.items():
            if not values:
                raise ValueError(f"{w}: black_box {name} must be a non-empty list")
        for oracle in [*parts["oracles"], bb["oracle"]]:
            if oracle != SUBSPACE:
                self._keys("black_box oracle", ["type"], value=oracle)
        if SUBSPACE in (*parts["oracles"], bb["oracle"]):
            fit = self._keys("black_box subspace", ["q", "tasks"], ["q", "tasks"],
                             value=bb.get("subspace"))
            validation.integer("black_box subspace q", fit["q"], 1, where=w)
            validation.integer("black_box subspace tasks", fit["tasks"], 1, where=w)
        validation.choice("black_box method", bb.get("method", "lft"), ("lft", *RESIDUALS), w)
        for k in parts["budgets"]:
            validation.integer("black_box budgets entry", k, 1, where=w)
        if max(parts["budgets"]) > self.steps:
            raise ValueError(f"{w}: black_box budgets {parts['budgets']} exceed the profile's "
                             f"{self.steps} steps; lower the budgets or raise steps")
        for rule in parts["rules"]:
            validation.choice("black_box rule", rule, zo_rivals.RULES, w)
        validation.integer("black_box iterations", bb["iterations"], 1, where=w)
        validation.integer("black_box meta_batch", bb["meta_batch"], 1, where=w)
        validation.positive("black_box meta_lr", bb["meta_lr"], w)
        if "weighting" in bb:
            check_weighting(bb["weighting"], self.steps, where=f"{w}: black_box weighting")


#: Each profile: victims and task sizes, fine-tuning steps, the budget's norm and radius grid
#: per source with the target ASR range of the reference attack, tuning (tasks, step-size
#: grids at a x2 spacing, widened while a best rate is on an edge; ART settings grids),
#: meta-training, test tasks, meta-training seeds, workers.
#: ART settings: ``step_fraction`` x eps is the attacker's step (FGSM's one step, PGD's steps),
#: ``pgd_iter`` PGD's steps per image, ``max_iter`` ART's passes over the 10 images,
#: ``delta`` ART's early stop (fooling rate >= 1 - delta). ``residual`` names the residual
#: learned rule (its base starts at its tuned rival's step size); ``iterations`` and
#: ``meta_lr`` have one entry for ``lft`` and one for the residual rule.
PROFILES: dict[str, UAPRivalsProfile] = {
    "quick": UAPRivalsProfile(
        victim="quick", pool=200, queries=5, steps=10, record={"dense": 2, "every": 5},
        norm="2", eps_grid={"mnist": [2.0, 4.0, 6.0], "cifar10": [1.0, 2.0, 3.0]},
        target_asr=[0.5, 0.85], tune_tasks=4,
        lr_grid={"pgd": [0.01, 0.03], "adam": [0.01, 0.03], "sgd": [1.0, 10.0]},
        art={"max_iter": 3, "delta": 0.0,
             "pgd": [{"step_fraction": 0.25, "pgd_iter": 5}],
             "fgsm": [{"step_fraction": 0.5}, {"step_fraction": 1.0}]},
        residual="lft+signsgd", iterations={"lft": 3, "residual": 3}, meta_batch=2,
        truncation=5, meta_lr={"lft": 3e-3, "residual": 3e-3}, lr_decay=0.1, meta_seeds=1,
        test_tasks=10, eval_chunk=250, workers=1),
    "paper": UAPRivalsProfile(
        victim="default", pool=None, queries=10, steps=20, record={"dense": 20, "every": 5},
        norm="2", eps_grid={"mnist": [2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0],
                            "cifar10": [0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]},
        target_asr=[0.5, 0.85], tune_tasks=16,
        lr_grid={"pgd": [0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32],
                 "adam": [0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32],
                 "sgd": [0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]},
        art={"max_iter": 10, "delta": 0.0,
             "pgd": [{"step_fraction": 0.1, "pgd_iter": 10},
                     {"step_fraction": 0.25, "pgd_iter": 10},
                     {"step_fraction": 0.5, "pgd_iter": 10}],
             "fgsm": [{"step_fraction": 0.25}, {"step_fraction": 0.5},
                      {"step_fraction": 1.0}, {"step_fraction": 2.0}]},
        residual="lft+sgd", iterations={"lft": 200, "residual": 200}, meta_batch=8,
        truncation=None, meta_lr={"lft": 3e-3, "residual": 3e-3}, lr_decay=0.1,
        meta_seeds=3, test_tasks=500, eval_chunk=250, workers=2, widen=4),
}


#: ``paper-kappa``: the paper profile with the C&W confidence kappa = 10 in the fine-tuners'
#: loss (the best of 0, 1, 3, 10 for tuned projected SGD on meta-training tasks,
#: ``probes/uap_kappa.py``): kappa = 0 is flat once the fine-tuning images are fooled
PROFILES["paper-kappa"] = dataclasses.replace(PROFILES["paper"], kappa=10.0)
#: ``paper-kappa-final``: ``paper-kappa`` with the residual rule's meta-loss on the last step
#: only, the step the table compares (``probes/uap_weighting.py``: on CIFAR-10 meta-training
#: tasks, +4.8 +- 0.9 points over tuned projected SGD at 20 steps, against +0.0 +- 1.0 with
#: every step weighted alike)
PROFILES["paper-kappa-final"] = dataclasses.replace(
    PROFILES["paper-kappa"], weighting={"residual": "final"})
#: the black-box profiles (:mod:`lft.experiments.uap_blackbox`): a white-box profile's eps and
#: test tasks, ZO-LFT (``oracle``; fewer, smaller meta-batches than FO-LFT: a zeroth-order step
#: costs 21 forward passes) against ZO rivals on ``oracles`` tuned for each of ``budgets``
PROFILES["black-box-quick"] = dataclasses.replace(PROFILES["quick"], black_box={
    "oracles": [zo_rivals.GAUSSIAN, zo_rivals.HISTORY], "oracle": zo_rivals.HISTORY,
    "budgets": [5, 10], "rules": ["signsgd"], "iterations": 2, "meta_batch": 2,
    "meta_lr": 3e-3})
PROFILES["black-box"] = dataclasses.replace(PROFILES["paper-kappa"], black_box={
    "oracles": [zo_rivals.GAUSSIAN, zo_rivals.HISTORY], "oracle": zo_rivals.HISTORY,
    "budgets": [5, 10, 20], "rules": ["signsgd", "sgd", "adam"], "iterations": 60,
    "meta_batch": 4, "meta_lr": 3e-3})

#: black-box profiles that query along a basis fitted per source on meta-training tasks
#: (``"subspace"``: :func:`lft.meta.fit_subspace` along tuned white-box SGD's trajectories;
#: ``probes/zo_subspace.py``), for the rivals beside plain Gaussian directions and for ZO-LFT,
#: here the residual ``lft+sgd`` (ZO-SGD on the same estimates plus a learned correction)
PROFILES["black-box-subspace-quick"] = dataclasses.replace(
    PROFILES["black-box-quick"], black_box={
        **PROFILES["black-box-quick"].black_box, "oracles": [zo_rivals.GAUSSIAN, SUBSPACE],
        "oracle": SUBSPACE, "method": "lft+sgd", "rules": ["signsgd", "sgd"],
        "subspace": {"q": 20, "tasks": 20}})
PROFILES["black-box-subspace"] = dataclasses.replace(
    PROFILES["black-box"], black_box={
        **PROFILES["black-box"].black_box, "oracles": [zo_rivals.GAUSSIAN, SUBSPACE],
        "oracle": SUBSPACE, "method": "lft+sgd", "subspace": {"q": 20, "tasks": 200},
        "iterations": 200})  # 200 meta-iterations: probes/zo_subspace_residual.py
#: ``black-box-subspace-budgets``: ZO-LFT's meta-loss on the reported budgets' steps only
#: (weight 1 at steps 5, 10 and 20; ``probes/zo_subspace_residual.py --source cifar10``: on
#: CIFAR-10 meta-training tasks +1.3 / +0.8 / +1.4 points over ZO-SGD on the same subspace,
#: tuned for each k)
PROFILES["black-box-subspace-budgets"] = dataclasses.replace(
    PROFILES["black-box-subspace"], black_box={
        **PROFILES["black-box-subspace"].black_box,
        "weighting": [1.0 if k in (5, 10, 20) else 0.0 for k in range(1, 21)]})


def uap_config(source: str, prof: UAPRivalsProfile, data_dir: str | None,
               eps: float | None) -> dict:
    """The family configuration of ``source``'s UAP tasks under the budget, ``lambda = 0``."""
    budget = {} if eps is None else {"eps": float(eps), "norm": prof.norm}
    kappa = {} if prof.kappa is None else {"kappa": float(prof.kappa)}
    return {"task": "uap", "source": source, "victim": prof.victim, "lam": 0.0,
            "shots": 5, "queries": prof.queries, "pool": prof.pool,
            "data_dir": data_dir, **budget, **kappa}


def record_steps(prof: UAPRivalsProfile) -> list[int]:
    """The steps at which the fine-tuners' metrics are recorded."""
    return sparse_steps(prof.steps, prof.record["every"], prof.record["dense"])


def art_kwargs(setting: dict, eps: float, prof: UAPRivalsProfile) -> dict:
    """:func:`lft.rivals.art.art_uap`'s settings from a profile entry at radius ``eps``."""
    out = {"max_iter": prof.art["max_iter"], "delta": prof.art["delta"]}
    for key, value in setting.items():
        if key == "step_fraction":
            out["eps_step"] = float(value) * eps
        else:
            out[key] = value
    return out
