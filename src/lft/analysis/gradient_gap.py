"""Theorem 1, measured: how far the LFT meta-gradient is from the L2O one as shots grow.

For one rule ``m_phi`` and one task, fine-tune the task's optimisee on its ``D_tr`` for ``K``
steps (the trajectory both methods unroll) and differentiate two meta-losses with respect to
``phi`` along that same trajectory:

* LFT: ``sum_k w_k l(theta_k; D_val) / l(theta_0; D_val)`` (Eq. 4, the held-out split);
* L2O: ``sum_k w_k l(theta_k; D_tr) / l(theta_0; D_tr)`` (Eq. 10, the fine-tuning split).

Theorem 1 (method-spec §1.11) bounds ``E ||g_LFT - g_L2O||^2`` by a constant times
``1/|D_tr| + 1/|D_val|``: with many shots both meta-losses estimate the same population loss
and LFT reduces to L2O (Remark 1); with few shots they differ (Remark 2). Here ``|D_val|``
grows with ``|D_tr|`` unless fixed. The trajectory is deliberately not L2O's merged-split
convention of the trainer (which would also change what is fine-tuned on): only the split the
meta-loss reads differs, which is exactly the difference the theorem is about.

Tasks (amplitude, phase) and initial optimisees are the same for every number of shots; only
the sampled points differ. Statistics are over tasks (and seeds, which for a fresh rule are
also fresh ``phi``), with 95% confidence intervals.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from lft.meta.evaluate import t_quantile_975
from lft.meta.objective import step_weights
from lft.meta.unroll import trajectory
from lft.oracles import build_oracle
from lft.rules.base import UpdateRule
from lft.seeding import generator as make_generator
from lft.tasks import SineFamily, TaskBatch

DEFAULT_SHOTS = (1, 2, 5, 10, 20, 50, 100)


@dataclass
class GapSettings:
    """What to measure: shot counts, tasks per seed, seeds, unroll length, ``|D_val|``."""

    shots: tuple[int, ...] = DEFAULT_SHOTS
    tasks: int = 32
    seeds: int = 3
    horizon: int = 20
    val_points: int | None = None  # None: as many validation points as shots
    weighting: str = "uniform"
    normalize: bool = False  # True: divide by the initial loss, as meta-training does
    seed: int = 0

    def __post_init__(self):
        self.shots = tuple(int(s) for s in self.shots)
        if not self.shots or min(self.shots) < 1:
            raise ValueError(f"shots must be positive integers, got {self.shots}")
        for label in ("tasks", "seeds", "horizon"):
            if getattr(self, label) < 1:
                raise ValueError(f"{label} must be at least 1, got {getattr(self, label)}")
        if self.val_points is not None and self.val_points < 1:
            raise ValueError(f"val_points must be at least 1, got {self.val_points}")
        step_weights(self.weighting, 1)


def task_meta_gradients(rule: UpdateRule, oracle, task: TaskBatch, theta0: torch.Tensor,
                        settings: GapSettings, generator: torch.Generator | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(g_LFT, g_L2O)``: flat meta-gradients w.r.t. the rule's parameters for one task."""
    params = [p for p in rule.parameters() if p.requires_grad]
    weights = step_weights(settings.weighting, settings.horizon)
    with torch.no_grad():
        scale = {s: task.loss(theta0, s).clamp_min(1e-8) if settings.normalize else 1.0
                 for s in ("val", "train")}
    losses = {"val": 0.0, "train": 0.0}
    state = rule.init(theta0, task.roles)
    for k, (theta, state) in enumerate(trajectory(rule, oracle, task, theta0, state,
                                                  settings.horizon, generator)):
        for s in losses:
            losses[s] = losses[s] + weights[k] * (task.loss(theta, s) / scale[s]).sum()
    g_val = torch.autograd.grad(losses["val"], params, retain_graph=True)
    g_tr = torch.autograd.grad(losses["train"], params)
    return torch.cat([g.reshape(-1) for g in g_val]), torch.cat([g.reshape(-1) for g in g_tr])


def _one_task(tasks: TaskBatch, i: int) -> TaskBatch:
    data = {k: (x[i:i + 1], y[i:i + 1]) for k, (x, y) in tasks.data.items()}
    return TaskBatch(tasks.model, data, tasks.loss_fn, tasks.metric_fns, tasks.primary_metric)


def measure(rules: list[UpdateRule], oracle_config: dict, family_config: dict,
            settings: GapSettings, progress: bool = True) -> dict[int, dict[str, torch.Tensor]]:
    """Per-task ``rel`` (``||g_LFT - g_L2O|| / ||g_LFT||``), ``cos``, ``sq`` (squared
    distance) and both norms, per number of shots; ``rules[s]`` serves seed ``s``."""
    oracle = build_oracle(oracle_config)
    base = {k: v for k, v in family_config.items() if k != "task"}
    out: dict[int, dict[str, list]] = {}
    total = len(settings.shots) * settings.seeds * settings.tasks
    with tqdm(total=total, disable=not progress, desc="gradient gap", leave=False) as bar:
        for shots in settings.shots:
            val = settings.val_points or shots
            family = SineFamily(**{**base, "shots": shots, "val_points": val})
            rows = out.setdefault(shots, {})
            for s in range(settings.seeds):
                rule = rules[s % len(rules)]
                seed = settings.seed + s
                tasks = family.sample(settings.tasks, make_generator(seed, "gap-tasks"))
                theta0 = family.model.init(settings.tasks, make_generator(seed, "gap-init"))
                gen = make_generator(seed, "gap-oracle")
                for i in range(settings.tasks):
                    g_lft, g_l2o = task_meta_gradients(rule, oracle, _one_task(tasks, i),
                                                       theta0[i:i + 1], settings, gen)
                    diff = (g_lft - g_l2o).norm()
                    n_lft, n_l2o = g_lft.norm(), g_l2o.norm()
                    for key, v in (("rel", diff / n_lft.clamp_min(1e-30)),
                                   ("cos", g_lft @ g_l2o / (n_lft * n_l2o).clamp_min(1e-30)),
                                   ("sq", diff ** 2), ("norm_lft", n_lft), ("norm_l2o", n_l2o)):
                        rows.setdefault(key, []).append(float(v))
                    bar.update(1)
    return {n: {k: torch.tensor(v, dtype=torch.float64) for k, v in r.items()}
            for n, r in out.items()}


def mean_ci(values: torch.Tensor) -> tuple[float, float]:
    """Mean and half-width of its 95% confidence interval (Student t)."""
    n = values.numel()
    ci = t_quantile_975(n - 1) * float(values.std()) / math.sqrt(n) if n > 1 else float("nan")
    return float(values.mean()), ci


def pooled_rel(sq: torch.Tensor, norm_lft: torch.Tensor, boot: int = 1000, seed: int = 0
               ) -> tuple[float, float, float]:
    """``sqrt(mean ||g_LFT - g_L2O||^2 / mean ||g_LFT||^2)`` with a 95% bootstrap interval."""
    def stat(idx):
        return torch.sqrt(sq[idx].mean(-1) / (norm_lft[idx] ** 2).mean(-1))
    n = sq.numel()
    g = torch.Generator().manual_seed(seed)
    draws = stat(torch.randint(0, n, (boot, n), generator=g))
    lo, hi = torch.quantile(draws, torch.tensor([0.025, 0.975], dtype=draws.dtype)).tolist()
    return float(stat(torch.arange(n))), lo, hi


def loglog_slope(x: list[float], y: list[float]) -> float:
    """Least-squares slope of ``log y`` against ``log x`` (Theorem 1: about -1 for E||.||^2)."""
    lx, ly = torch.log(torch.tensor(x, dtype=torch.float64)), torch.log(
        torch.tensor(y, dtype=torch.float64))
    lx, ly = lx - lx.mean(), ly - ly.mean()
    return float((lx * ly).sum() / (lx * lx).sum()) if len(x) > 1 else float("nan")


def summarize(raw: dict[int, dict[str, torch.Tensor]], settings: GapSettings) -> list[dict]:
    """One summary record per number of shots."""
    records = []
    for shots, r in sorted(raw.items()):
        rel, rel_ci = mean_ci(r["rel"])
        cos, cos_ci = mean_ci(r["cos"])
        sq, sq_ci = mean_ci(r["sq"])
        pooled, lo, hi = pooled_rel(r["sq"], r["norm_lft"], seed=settings.seed)
        records.append({"shots": shots, "val_points": settings.val_points or shots,
                        "n": int(r["rel"].numel()), "rel": rel, "rel_ci95": rel_ci,
                        "rel_median": float(r["rel"].median()), "cos": cos, "cos_ci95": cos_ci,
                        "sq": sq, "sq_ci95": sq_ci, "pooled_rel": pooled,
                        "pooled_rel_lo": lo, "pooled_rel_hi": hi,
                        "norm_lft": float(r["norm_lft"].mean()),
                        "norm_l2o": float(r["norm_l2o"].mean())})
    return records


def fresh_rules(n: int, seed: int = 0) -> list[UpdateRule]:
    """``n`` freshly initialised default LSTM rules (meta-training's starting points)."""
    from lft.meta.learners import Method, preset

    return [Method(preset("lft"), SineFamily(hidden=(1,)), seed=seed + s).rule for s in range(n)]


def trainable(rule: UpdateRule) -> UpdateRule:
    """A copy of ``rule`` whose parameters require gradients (loaded fine-tuners are frozen)."""
    rule = copy.deepcopy(rule)
    for p in rule.parameters():
        p.requires_grad_(True)
    if not any(True for _ in rule.parameters()):
        raise ValueError("this rule has no parameters, so it has no meta-gradient to compare")
    return rule


def settings_dict(settings: GapSettings) -> dict:
    """The settings as JSON (tuples as lists), for the results document."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(settings).items()}


__all__ = ["DEFAULT_SHOTS", "GapSettings", "fresh_rules", "loglog_slope", "mean_ci", "measure",
           "pooled_rel", "settings_dict", "summarize", "task_meta_gradients", "trainable"]
