"""Meta-test: per-step curves over held-out tasks, with 95% confidence intervals.

Test tasks and their random initialisations come from streams keyed ``"test-*"``, disjoint
from every stream meta-training or learning-rate tuning reads. Hand-designed baselines get
their learning rate from :func:`tune_learning_rate`, which only sees meta-training-stream tasks
and their validation split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from lft import validation
from lft.meta.learners import Method, MethodConfig, recorded_steps, with_base_lr
from lft.seeding import generator as make_generator
from lft.tasks.base import TaskFamily, as_groups


def t_quantile_975(dof: int) -> float:
    """Two-sided 95% Student-t quantile (Cornish-Fisher expansion; exact to ~1e-3 for dof >= 3)."""
    z = 1.959963984540054
    if dof <= 0:
        return float("nan")
    v = float(dof)
    return z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2) + (
        3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)


@dataclass
class Curve:
    """Per-task values of one metric at every fine-tuning step: ``values[task, step]``.

    ``steps`` (optional) lists the fine-tuning step of each column when only some steps were
    recorded (``evaluate(..., record=...)``); ``None`` means columns ``0, 1, 2, ...``.
    """

    metric: str
    values: torch.Tensor
    steps: list[int] | None = None

    @property
    def n(self) -> int:
        return self.values.shape[0]

    def mean(self) -> torch.Tensor:
        """Mean over tasks at each step."""
        return self.values.mean(0)

    def ci95(self) -> torch.Tensor:
        """Half-width of the 95% confidence interval of the mean at each step."""
        if self.n < 2:
            return torch.full_like(self.mean(), float("nan"))
        return t_quantile_975(self.n - 1) * self.values.std(0) / math.sqrt(self.n)


def sparse_steps(steps: int, every: int = 5, dense: int = 10) -> list[int]:
    """Steps ``0..dense``, every ``every``-th step and the last one: where to record metrics
    cheaply (``evaluate(..., record=sparse_steps(200))`` records 49 of 201 steps)."""
    steps = validation.integer("steps", steps, 0, where="sparse_steps")
    every = validation.integer("every", every, 1, where="sparse_steps")
    dense = validation.integer("dense", dense, 0, where="sparse_steps")
    return sorted({*range(min(dense, steps) + 1), *range(0, steps + 1, every), steps})


def evaluate(method: Method, family: TaskFamily, n_tasks: int = 500, steps: int = 20,
             seed: int = 0, chunk: int = 250, progress: bool = True,
             purpose: str = "test", record=None, on_step=None) -> dict[str, Curve]:
    """Fine-tune ``n_tasks`` held-out tasks for ``steps`` steps; curves of every metric.

    ``on_step(k, theta, metrics)`` (optional) is passed to :meth:`Method.curve` for every chunk
    of tasks, in task order (e.g. to keep each task's final optimisee, as ``lft attack
    --source`` keeps its perturbations).

    ``record`` (optional): the steps at which to compute the metrics (default every step), e.g.
    :func:`sparse_steps`; the curves then have one column per recorded step (``Curve.steps``),
    equal to the full curves' at those steps.

    Raises ``ValueError`` for non-positive ``n_tasks``, ``steps`` or ``chunk`` and for a
    method whose learned initialisation does not fit ``family``'s optimisee.
    """
    if not isinstance(method, Method):
        raise TypeError(f"evaluate needs a lft.Method, got {type(method).__name__}")
    method.check_family(family)
    n_tasks = validation.integer("n_tasks", n_tasks, 1, where="evaluate")
    steps = validation.integer("steps", steps, 1, where="evaluate")
    chunk = validation.integer("chunk", chunk, 1, where="evaluate")
    if purpose == "test":
        family = family.for_part("meta-test")
    task_gen = make_generator(seed, f"{purpose}-tasks")
    run_gen = make_generator(seed, f"{purpose}-run")
    parts: dict[str, list[torch.Tensor]] = {}
    done = 0
    with tqdm(total=n_tasks, disable=not progress, desc=f"evaluate {method.config.label}",
              leave=False, dynamic_ncols=True) as bar:
        while done < n_tasks:
            b = min(chunk, n_tasks - done)
            for tasks in as_groups(family.sample(b, task_gen)):
                for name, v in method.curve(tasks, steps, run_gen, "test", record,
                                            on_step).items():
                    parts.setdefault(name, []).append(v)
            done += b
            bar.update(b)
    kept = None if record is None else recorded_steps(steps, record)
    return {name: Curve(name, torch.cat(vs), kept) for name, vs in parts.items()}


def validation_losses(config: MethodConfig, family: TaskFamily, grid: list[float],
                      steps: int = 20, n_tasks: int = 100, seed: int = 0,
                      chunk: int | None = None, record=None) -> dict[float, torch.Tensor]:
    """Validation loss of a hand-designed rule at each learning rate of ``grid``, per task
    and recorded step: ``{lr: (n_tasks, len(recorded steps))}``, on meta-training-stream
    tasks (never test tasks). Every learning rate sees the same tasks and random starts.

    ``chunk`` bounds how many tasks run at once (memory); it changes which tasks are drawn,
    so compare methods at the same ``chunk``. ``record`` (optional): the steps to measure
    (default every step of ``0..steps``).
    """
    where = "tune_learning_rate"
    grid = [validation.positive("learning rate in grid", lr, where)
            for lr in validation.sequence("grid", grid, where=where)]
    if not grid:
        raise ValueError(f"{where}: grid must list at least one learning rate")
    steps = validation.integer("steps", steps, 1, where=where)
    n_tasks = validation.integer("n_tasks", n_tasks, 1, where=where)
    out: dict[float, torch.Tensor] = {}
    for lr in grid:
        cfg = MethodConfig.from_dict({**config.to_dict(), "rule": with_base_lr(config.rule, lr)})
        method = Method(cfg, family, seed)
        task_gen = make_generator(seed, "lr-tuning-tasks")
        init_gen = make_generator(seed, "lr-tuning-init")
        losses, done = [], 0
        while done < n_tasks:  # in chunks of ``chunk`` tasks (all at once by default)
            b = min(chunk or n_tasks, n_tasks - done)
            losses += [method.curve(t, steps, init_gen, "val", record)["loss"]
                       for t in as_groups(family.sample(b, task_gen))]
            done += b
        out[lr] = torch.cat(losses)
    return out


def _finite(score: torch.Tensor) -> float:
    return float(score) if torch.isfinite(score) else float("inf")


def _widened(losses: dict[float, torch.Tensor], choose, more, widen: int
             ) -> dict[float, torch.Tensor]:
    """``losses`` with the grid pushed outward while a choice sits on its edge.

    ``choose(losses)`` lists the learning rates chosen from the curves so far (one per
    budget); while one of them is the grid's smallest (largest) rate, half that rate (twice
    it) is evaluated with ``more([rate])`` and added, at most ``widen`` rounds. A rival whose
    best step size is the edge of its grid may be weakened by the grid alone; one that is
    bracketed on both sides at a x2 spacing is not.
    """
    widen = validation.integer("widen", widen, 0, where="tune_learning_rate")
    for _ in range(widen):
        chosen, low, high = set(choose(losses)), min(losses), max(losses)
        extra = ([low / 2] if low in chosen else []) + ([high * 2] if high in chosen else [])
        if not extra:
            break
        losses = {**losses, **more(extra)}
    return dict(sorted(losses.items()))


def tune_learning_rate(config: MethodConfig, family: TaskFamily, grid: list[float],
                       steps: int = 20, n_tasks: int = 100, seed: int = 0,
                       chunk: int | None = None, record=None, widen: int = 0
                       ) -> tuple[float, dict[float, float]]:
    """Pick a hand-designed rule's learning rate on meta-training-stream tasks.

    Score: validation loss averaged over steps ``1..steps`` (the area under the curve, the
    same quantity LFT's uniform-weight meta-loss measures). Test tasks (and, for image
    families, meta-test images) are never seen. ``chunk`` and ``record`` as in
    :func:`validation_losses` (with ``record``, the loss is averaged over the recorded steps
    after 0 only, which saves most of the cost of measuring it on image tasks). ``widen``:
    while the best rate is the grid's smallest or largest, try half or twice it, at most
    this many times (the returned scores list every rate tried).
    """
    later = [i for i, k in enumerate(recorded_steps(steps, record)) if k > 0]

    def scores_of(losses):
        return {lr: _finite(v[:, later].mean()) for lr, v in losses.items()}

    def more(rates):
        return validation_losses(config, family, rates, steps, n_tasks, seed, chunk, record)

    def choose(losses):
        scores = scores_of(losses)
        return [min(scores, key=scores.get)]

    scores = scores_of(_widened(more(grid), choose, more, widen))
    return min(scores, key=scores.get), scores


def tune_per_budget(config: MethodConfig, family: TaskFamily, grid: list[float],
                    budgets: list[int], n_tasks: int = 100, seed: int = 0,
                    chunk: int | None = None, widen: int = 0) -> tuple[dict[int, float], dict]:
    """The best learning rate for each budget ``k`` of ``budgets``, scored by the validation
    loss *at step k* on meta-training-stream tasks (the best step size after 1 step is not the
    best after 20), and the AUC choice of :func:`tune_learning_rate` (key ``"auc"``) from the
    same curves.

    Returns ``({k: lr}, {"loss_at_k": {k: {lr: score}}, "auc": {lr: score}, "best_auc": lr})``.
    A rival tuned this way is the strongest constant-step rule at every budget it is
    compared at. ``widen`` as in :func:`tune_learning_rate`: the grid grows while any
    budget's (or the AUC's) best rate is on its edge.
    """
    budgets = sorted({validation.integer("budget", k, 1, where="tune_per_budget")
                      for k in validation.sequence("budgets", budgets, where="tune_per_budget")})
    if not budgets:
        raise ValueError("tune_per_budget: budgets must name at least one step")
    steps = budgets[-1]

    def more(rates):
        return validation_losses(config, family, rates, steps, n_tasks, seed, chunk)

    def choose(losses):
        at = [{lr: _finite(v[:, k].mean()) for lr, v in losses.items()} for k in budgets]
        at.append({lr: _finite(v[:, 1:].mean()) for lr, v in losses.items()})
        return [min(scores, key=scores.get) for scores in at]

    losses = _widened(more(grid), choose, more, widen)
    at_k = {k: {lr: _finite(v[:, k].mean()) for lr, v in losses.items()} for k in budgets}
    auc = {lr: _finite(v[:, 1:].mean()) for lr, v in losses.items()}
    best = {k: min(scores, key=scores.get) for k, scores in at_k.items()}
    return best, {"loss_at_k": at_k, "auc": auc, "best_auc": min(auc, key=auc.get)}
