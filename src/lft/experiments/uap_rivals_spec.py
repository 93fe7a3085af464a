"""``uap-rivals``' specification: sources, methods, profiles, task configurations.

The leaf of the uap-rivals modules (:mod:`~lft.experiments.uap_rivals_jobs` runs its jobs,
:mod:`~lft.experiments.uap_blackbox` its black-box profiles,
:mod:`~lft.experiments.uap_rivals_report` writes it, :mod:`~lft.experiments.uap_rivals` is the
artefact); it imports none of them.
"""

from __future__ import annotations

from lft.data.sources import SOURCES  # noqa: F401 - the artefact's sources, read by its jobs
from lft.experiments import zo_rivals
from lft.meta.evaluate import sparse_steps

ARTEFACT = "uap-rivals"
RESIDUALS = ("lft+signsgd", "lft+sgd", "lft+adam")
TUNED = ("pgd", "adam", "sgd")
#: a tuned method's row name -> the hand-designed preset it runs, and back for residual bases
RULE_OF = {"pgd": "signsgd", "adam": "adam", "sgd": "sgd"}
ROW_OF = {rule: row for row, rule in RULE_OF.items()}
ART_METHODS = ("art-pgd", "art-fgsm")
#: every method, in the order of the tables and of the paired differences (earlier - later)
METHODS = ("lft", *RESIDUALS, *TUNED, *ART_METHODS)

#: Each profile: victims and task sizes, fine-tuning steps, the budget's norm and radius grid
#: per source with the target ASR range of the reference attack, tuning (tasks, step-size
#: grids, ART settings grids), meta-training, test tasks, meta-training seeds, workers.
#: ART settings: ``step_fraction`` x eps is the attacker's step (FGSM's one step, PGD's steps),
#: ``pgd_iter`` PGD's steps per image, ``max_iter`` ART's passes over the 10 images,
#: ``delta`` ART's early stop (fooling rate >= 1 - delta). ``residual`` names the residual
#: learned rule (its base starts at its tuned rival's step size); ``iterations`` and
#: ``meta_lr`` have one entry for ``lft`` and one for the residual rule.
PROFILES: dict[str, dict] = {
    "quick": {"victim": "quick", "pool": 200, "queries": 5, "steps": 10,
              "record": {"dense": 2, "every": 5}, "norm": "2",
              "eps_grid": {"mnist": [2.0, 4.0, 6.0], "cifar10": [1.0, 2.0, 3.0]},
              "target_asr": [0.5, 0.85], "tune_tasks": 4,
              "lr_grid": {"pgd": [0.01, 0.03], "adam": [0.01, 0.03], "sgd": [1.0, 10.0]},
              "art": {"max_iter": 3, "delta": 0.0,
                      "pgd": [{"step_fraction": 0.25, "pgd_iter": 5}],
                      "fgsm": [{"step_fraction": 0.5}, {"step_fraction": 1.0}]},
              "residual": "lft+signsgd", "iterations": {"lft": 3, "residual": 3},
              "meta_batch": 2, "truncation": 5, "meta_lr": {"lft": 3e-3, "residual": 3e-3},
              "lr_decay": 0.1,
              "meta_seeds": 1, "test_tasks": 10, "eval_chunk": 250, "workers": 1},
    "paper": {"victim": "default", "pool": None, "queries": 10, "steps": 20,
              "record": {"dense": 20, "every": 5}, "norm": "2",
              "eps_grid": {"mnist": [2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0],
                           "cifar10": [0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]},
              "target_asr": [0.5, 0.85], "tune_tasks": 16,
              "lr_grid": {"pgd": [0.003, 0.01, 0.03, 0.1], "adam": [0.003, 0.01, 0.03, 0.1],
                          "sgd": [0.3, 1.0, 3.0, 10.0, 30.0, 100.0]},
              "art": {"max_iter": 10, "delta": 0.0,
                      "pgd": [{"step_fraction": 0.1, "pgd_iter": 10},
                              {"step_fraction": 0.25, "pgd_iter": 10}],
                      "fgsm": [{"step_fraction": 0.25}, {"step_fraction": 0.5},
                               {"step_fraction": 1.0}]},
              "residual": "lft+sgd", "iterations": {"lft": 200, "residual": 200},
              "meta_batch": 8, "truncation": None, "meta_lr": {"lft": 3e-3, "residual": 3e-3},
              "lr_decay": 0.1, "meta_seeds": 3, "test_tasks": 500, "eval_chunk": 250,
              "workers": 2},
}


#: ``paper-kappa``: the paper profile with the C&W confidence kappa = 10 in the fine-tuners'
#: loss (the best of 0, 1, 3, 10 for tuned projected SGD on meta-training tasks,
#: ``probes/uap_kappa.py``): kappa = 0 is flat once the fine-tuning images are fooled
PROFILES["paper-kappa"] = {**PROFILES["paper"], "kappa": 10.0}
#: the black-box profiles (:mod:`lft.experiments.uap_blackbox`): a white-box profile's eps and
#: test tasks, ZO-LFT (``oracle``; fewer, smaller meta-batches than FO-LFT: a zeroth-order step
#: costs 21 forward passes) against ZO rivals on ``oracles`` tuned for each of ``budgets``
PROFILES["black-box-quick"] = {**PROFILES["quick"], "black_box": {
    "oracles": [zo_rivals.GAUSSIAN, zo_rivals.HISTORY], "oracle": zo_rivals.HISTORY,
    "budgets": [5, 10], "rules": ["signsgd"], "iterations": 2, "meta_batch": 2,
    "meta_lr": 3e-3}}
PROFILES["black-box"] = {**PROFILES["paper-kappa"], "black_box": {
    "oracles": [zo_rivals.GAUSSIAN, zo_rivals.HISTORY], "oracle": zo_rivals.HISTORY,
    "budgets": [5, 10, 20], "rules": ["signsgd", "sgd", "adam"], "iterations": 60,
    "meta_batch": 4, "meta_lr": 3e-3}}

#: black-box profiles that query along a basis fitted per source on meta-training tasks
#: (``"subspace"``: :func:`lft.meta.fit_subspace` along tuned white-box SGD's trajectories;
#: ``probes/zo_subspace.py``), for the rivals beside plain Gaussian directions and for ZO-LFT,
#: here the residual ``lft+sgd`` (ZO-SGD on the same estimates plus a learned correction)
PROFILES["black-box-subspace-quick"] = {**PROFILES["black-box-quick"], "black_box": {
    **PROFILES["black-box-quick"]["black_box"], "oracles": [zo_rivals.GAUSSIAN, "subspace"],
    "oracle": "subspace", "method": "lft+sgd", "rules": ["signsgd", "sgd"],
    "subspace": {"q": 20, "tasks": 20}}}
PROFILES["black-box-subspace"] = {**PROFILES["black-box"], "black_box": {
    **PROFILES["black-box"]["black_box"], "oracles": [zo_rivals.GAUSSIAN, "subspace"],
    "oracle": "subspace", "method": "lft+sgd", "subspace": {"q": 20, "tasks": 200}}}


def uap_config(source: str, prof: dict, data_dir: str | None, eps: float | None) -> dict:
    """The family configuration of ``source``'s UAP tasks under the budget, ``lambda = 0``."""
    budget = {} if eps is None else {"eps": float(eps), "norm": prof["norm"]}
    kappa = {"kappa": float(prof["kappa"])} if "kappa" in prof else {}
    return {"task": "uap", "source": source, "victim": prof["victim"], "lam": 0.0,
            "shots": 5, "queries": prof["queries"], "pool": prof["pool"],
            "data_dir": data_dir, **budget, **kappa}


def record_steps(prof: dict) -> list[int]:
    """The steps at which the fine-tuners' metrics are recorded."""
    return sparse_steps(prof["steps"], prof["record"]["every"], prof["record"]["dense"])


def art_kwargs(setting: dict, eps: float, prof: dict) -> dict:
    """:func:`lft.rivals.art.art_uap`'s settings from a profile entry at radius ``eps``."""
    out = {"max_iter": prof["art"]["max_iter"], "delta": prof["art"]["delta"]}
    for key, value in setting.items():
        if key == "step_fraction":
            out["eps_step"] = float(value) * eps
        else:
            out[key] = value
    return out
