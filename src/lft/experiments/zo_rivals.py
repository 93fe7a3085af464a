"""Zeroth-order rivals tuned for every budget: ZO-SGD, ZO-signSGD (Liu et al.) and ZO-Adam.

A learned zeroth-order rule is only worth its meta-training if it beats hand-designed rules fed
the *same* estimates at the *same* number of loss evaluations. Each rival here is a
hand-designed rule on one oracle configuration (the best of the new estimators, and plain
Gaussian directions), with its learning rate tuned separately for each reported budget ``k``
on meta-training tasks (:func:`lft.meta.evaluate.tune_per_budget`). Artefacts (``figure4``,
``uap-rivals``) call :func:`tune`, run :func:`jobs` with their other jobs on the same test
tasks, and turn the curves into schema rows with :func:`rows` and :func:`versus_rows`.
"""

from __future__ import annotations

import torch

from lft.meta.evaluate import Curve, tune_per_budget
from lft.meta.learners import preset
from lft.oracles import estimator_name, queries_per_step
from lft.tasks import build_family

RULES = ("sgd", "signsgd", "adam")
#: the two oracles every artefact gives its rivals, 20 directions plus the base point per step:
#: the history estimator (least squares with the last 3 estimates in the query span, chosen on
#: meta-training sine tasks by probes/zo_oracles.py) and plain Gaussian directions
HISTORY = {"type": "history", "q": 20, "m": 3, "mu": 0.005, "scheme": "forward"}
GAUSSIAN = {"type": "zo", "q": 20, "mu": 0.005, "directions": "gaussian", "scheme": "forward",
            "differentiable": False}
LEARNED = {"type": "learned", "q": 20, "mu": 0.005, "scheme": "forward"}
LABELS = {"sgd": "ZO-SGD", "signsgd": "ZO-signSGD", "adam": "ZO-Adam"}


def config(rule: str, oracle: dict, lr: float, horizon: int) -> dict:
    """The method configuration of rival ``rule`` on ``oracle`` at ``lr``."""
    cfg = preset(rule, zo=True, base_lr=lr, horizon=horizon)
    cfg.oracle = dict(oracle)
    cfg.validate()
    return cfg.to_dict()


def tune(family_config: dict, oracles: list[dict], grid: list[float], budgets: list[int],
         n_tasks: int, seed: int = 0, chunk: int | None = None,
         rules: tuple[str, ...] = RULES, widen: int = 0) -> dict:
    """``{"rule/estimator": {"oracle": ..., "best": {k: lr}, "loss_at_k": ...}}``: every rival's
    learning rate for every budget, on meta-training-stream tasks only. ``grid`` is one list
    of learning rates, or a dict of one list per rule; ``widen``: see
    :func:`lft.meta.evaluate.tune_per_budget`."""
    family = build_family(family_config)
    out = {}
    for oracle in oracles:
        for rule in rules:
            cfg = preset(rule, zo=True, horizon=max(budgets))
            cfg.oracle = dict(oracle)
            rates = grid[rule] if isinstance(grid, dict) else grid
            best, scores = tune_per_budget(cfg, family, rates, budgets, n_tasks=n_tasks,
                                           seed=seed, chunk=chunk, widen=widen)
            out[f"{rule}/{estimator_name(oracle)}"] = {
                "rule": rule, "oracle": dict(oracle), "best": best,
                "loss_at_k": scores["loss_at_k"]}
    return out


def jobs(tuning: dict, common: dict, horizon: int, estimate_s: float = 1.0) -> list[dict]:
    """One evaluation job per distinct (rival, learning rate), on ``common``'s test tasks."""
    out = []
    for key, t in tuning.items():
        for lr in sorted(set(t["best"].values())):
            label = f"{LABELS[t['rule']]} [{estimator_name(t['oracle'])}] lr {lr:g}"
            out.append({**common, "label": label,
                        "method": config(t["rule"], t["oracle"], lr, horizon),
                        "zo_rival": key, "lr": lr, "estimate_s": estimate_s})
    return out


def curves_at_budgets(tuning: dict, curves: dict[tuple[str, float], Curve]
                      ) -> dict[tuple[str, int], torch.Tensor]:
    """``{(rival, k): per-task values at step k}``, each from the rate tuned for ``k``;
    ``curves`` maps ``(rival key, lr)`` to that job's curve of one metric."""
    out = {}
    for key, t in tuning.items():
        for k, lr in t["best"].items():
            c = curves[(key, lr)]
            out[(key, int(k))] = c.values[:, (c.steps or list(range(c.values.shape[1]))).index(
                int(k))]
    return out


def _stats(values: torch.Tensor) -> tuple[float, float, int]:
    c = Curve("x", values[:, None])
    return float(c.mean()[0]), float(c.ci95()[0]), c.n


def rows(tuning: dict, at_k: dict, metric: str, source: str, examples: int) -> list[dict]:
    """Schema rows of each rival at each budget (``method: sgd|signsgd|adam``, ``oracle:
    zo``, ``estimator``), with ``queries``."""
    out = []
    for (key, k), values in sorted(at_k.items()):
        t = tuning[key]
        mean, ci, n = _stats(values)
        out.append({"method": t["rule"], "oracle": "zo", "estimator":
                    estimator_name(t["oracle"]), "train_source": "none", "test_source": source,
                    "metric": metric, "step": k, "mean": mean, "ci95": ci, "n": n,
                    "queries": k * queries_per_step(t["oracle"], examples),
                    "note": f"lr={t['best'][k]:g}, tuned for step {k} on meta-training tasks"})
    return out


def versus_rows(name: str, values: Curve, tuning: dict, at_k: dict, metric: str,
                train_source: str, source: str, queries_per_step: int,
                extra: dict | None = None) -> list[dict]:
    """Paired rows ``name`` (a learned zeroth-order rule's per-task curve) minus each rival
    tuned for each budget, over the same test tasks and random starts."""
    out = []
    steps = values.steps or list(range(values.values.shape[1]))
    for (key, k), rival in sorted(at_k.items()):
        t = tuning[key]
        mean, ci, n = _stats(values.values[:, steps.index(k)] - rival)
        out.append({"method": name, "oracle": "zo", **(extra or {}),
                    "train_source": train_source, "test_source": source, "metric": metric,
                    "step": k, "mean": mean, "ci95": ci, "n": n, "versus": f"{t['rule']}/zo",
                    "versus_estimator": estimator_name(t["oracle"]),
                    "queries": k * queries_per_step,
                    "note": f"{LABELS[t['rule']]} on {estimator_name(t['oracle'])} estimates at "
                            f"lr={t['best'][k]:g}, tuned for step {k}; same test tasks and "
                            "random starts"})
    return out
