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

from lft.meta.learners import Method, MethodConfig
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
    """Per-task values of one metric at every fine-tuning step: ``values[task, step]``."""

    metric: str
    values: torch.Tensor

    @property
    def n(self) -> int:
        return self.values.shape[0]

    def mean(self) -> torch.Tensor:
        return self.values.mean(0)

    def ci95(self) -> torch.Tensor:
        """Half-width of the 95% confidence interval of the mean at each step."""
        if self.n < 2:
            return torch.full_like(self.mean(), float("nan"))
        return t_quantile_975(self.n - 1) * self.values.std(0) / math.sqrt(self.n)


def evaluate(method: Method, family: TaskFamily, n_tasks: int = 500, steps: int = 20,
             seed: int = 0, chunk: int = 250, progress: bool = True,
             purpose: str = "test") -> dict[str, Curve]:
    """Fine-tune ``n_tasks`` held-out tasks for ``steps`` steps; curves of every metric."""
    if n_tasks < 1 or steps < 0:
        raise ValueError(f"need n_tasks >= 1 and steps >= 0, got {n_tasks} and {steps}")
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
                for name, v in method.curve(tasks, steps, run_gen, "test").items():
                    parts.setdefault(name, []).append(v)
            done += b
            bar.update(b)
    return {name: Curve(name, torch.cat(vs)) for name, vs in parts.items()}


def tune_learning_rate(config: MethodConfig, family: TaskFamily, grid: list[float],
                       steps: int = 20, n_tasks: int = 100, seed: int = 0
                       ) -> tuple[float, dict[float, float]]:
    """Pick a hand-designed rule's learning rate on meta-training-stream tasks.

    Score: validation loss averaged over steps ``1..steps`` (the area under the curve, the
    same quantity LFT's uniform-weight meta-loss measures). Test tasks (and, for image
    families, meta-test images) are never seen.
    """
    scores: dict[float, float] = {}
    for lr in grid:
        cfg = MethodConfig.from_dict({**config.to_dict(), "rule": {**config.rule, "lr": lr}})
        method = Method(cfg, family, seed)
        groups = as_groups(family.sample(n_tasks, make_generator(seed, "lr-tuning-tasks")))
        init_gen = make_generator(seed, "lr-tuning-init")
        losses = [method.curve(t, steps, init_gen, "val")["loss"] for t in groups]
        score = torch.cat(losses)[:, 1:].mean()
        scores[lr] = float(score) if torch.isfinite(score) else float("inf")
    best = min(scores, key=scores.get)
    return best, scores
