"""The outer loop: meta-train a method's rule and/or initialisation (Algorithm 1).

Each meta-iteration samples a meta-batch of tasks, starts their optimisees, and unrolls the
rule for ``horizon`` steps in truncated windows of ``truncation`` steps. After each window the
weighted meta-loss of that window is back-propagated, the meta-gradient is clipped and applied
with Adam, and the optimisees and rule state are detached and carried into the next window
(truncated BPTT: memory is bounded by the window, not the horizon). A non-finite
meta-gradient is skipped and counted, never applied.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from lft.meta.learners import Method
from lft.meta.objective import step_weights
from lft.meta.unroll import trajectory
from lft.rules.base import detach_state
from lft.seeding import generator as make_generator
from lft.tasks.base import TaskFamily, as_groups


@dataclass
class TrainConfig:
    """Outer-loop settings (JSON-serialisable)."""

    iterations: int = 1000
    meta_batch: int = 8
    meta_lr: float = 1e-3
    clip: float = 1.0
    seed: int = 0
    log_every: int = 50
    lr_decay: float = 1.0  # final meta-lr as a fraction of the initial one (cosine schedule)

    def __post_init__(self):
        if self.iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {self.iterations}")
        if self.meta_batch < 1:
            raise ValueError(f"meta_batch must be >= 1, got {self.meta_batch}")
        if self.meta_lr <= 0:
            raise ValueError(f"meta_lr must be positive, got {self.meta_lr}")


@dataclass
class TrainStats:
    """What happened during meta-training."""

    iterations: int = 0
    updates: int = 0
    skipped_nonfinite: int = 0
    wall_time_s: float = 0.0


class MetaTrainer:
    """Meta-trains ``method`` on tasks from ``family``.

    ``log`` (optional) is called with a dict per logged iteration; :meth:`train` also returns
    the history. The trainer holds no global state: two trainers can run side by side.
    """

    def __init__(self, method: Method, family: TaskFamily, config: TrainConfig,
                 log: Callable[[dict], None] | None = None):
        self.method, self.family, self.config = method, family, config
        self.params = method.meta_parameters()
        if not self.params:
            raise ValueError(f"method {method.config.name!r} has nothing to meta-learn")
        self.optimizer = torch.optim.Adam(self.params, lr=config.meta_lr)
        self.log = log
        self.stats = TrainStats()
        self.task_gen = make_generator(config.seed, "meta-train-tasks")
        self.init_gen = make_generator(config.seed, "meta-train-init")
        self.oracle_gen = make_generator(config.seed, "meta-train-oracle")

    def _lr_at(self, it: int) -> float:
        c = self.config
        if c.lr_decay >= 1.0 or c.iterations <= 1:
            return c.meta_lr
        frac = it / (c.iterations - 1)
        return c.meta_lr * (c.lr_decay + (1 - c.lr_decay) * 0.5 * (1 + math.cos(math.pi * frac)))

    def _apply(self, loss: torch.Tensor) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.config.clip,
                                              error_if_nonfinite=False)
        if not torch.isfinite(norm) or not torch.isfinite(loss):
            self.stats.skipped_nonfinite += 1
            self.optimizer.zero_grad(set_to_none=True)
            return float("nan")
        self.optimizer.step()
        self.stats.updates += 1
        return float(norm)

    def iteration(self, it: int) -> dict:
        """One meta-iteration over a fresh meta-batch; returns its log record."""
        m, cfg = self.method, self.method.config
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr_at(it)
        groups = [m.prepare(g) for g in as_groups(
            self.family.sample(self.config.meta_batch, self.task_gen))]
        n_tasks = sum(g.size for g in groups)
        split = cfg.meta_split
        weights = step_weights(cfg.weighting, cfg.horizon)
        runs = []  # per shape group: [tasks, theta, state, scale]
        for tasks in groups:
            theta, state = m.start(tasks, self.init_gen)
            with torch.no_grad():
                scale = tasks.loss(theta, split).clamp_min(1e-8) if cfg.normalize else None
            runs.append([tasks, theta, state, scale])
        window = cfg.truncation or cfg.horizon
        total, norms, k = 0.0, [], 0
        while k < cfg.horizon:
            n = min(window, cfg.horizon - k)
            loss = runs[0][1].new_zeros(())
            for run in runs:
                tasks, theta, state, scale = run
                group_loss = theta.new_zeros(())
                for j, (theta, state) in enumerate(trajectory(
                        m.rule, m.oracle, tasks, theta, state, n, self.oracle_gen)):
                    per_task = tasks.loss(theta, split)
                    if scale is not None:
                        per_task = per_task / scale
                    group_loss = group_loss + weights[k + j] * per_task.mean()
                run[1], run[2] = theta, state
                loss = loss + (tasks.size / n_tasks) * group_loss
            k += n
            if loss.requires_grad:
                norms.append(self._apply(loss))
            total += float(loss.detach())
            for run in runs:
                run[1], run[2] = run[1].detach(), detach_state(run[2])
        with torch.no_grad():
            final = sum(r[0].loss(r[1], split).sum() for r in runs) / n_tasks
        self.stats.iterations += 1
        return {"iteration": it, "meta_loss": total, "final_loss": float(final),
                "grad_norm": max(norms) if norms else float("nan"),
                "meta_lr": self._lr_at(it)}

    def train(self, progress: bool = True, start: int = 0,
              on_iteration: Callable[[int], None] | None = None) -> list[dict]:
        """Run ``iterations`` meta-iterations; returns the logged records."""
        history, t0 = [], time.perf_counter()
        bar = tqdm(range(start, self.config.iterations), disable=not progress,
                   desc=f"meta-train {self.method.config.label}", leave=False, dynamic_ncols=True)
        ema = None
        for it in bar:
            rec = self.iteration(it)
            ema = rec["meta_loss"] if ema is None or not math.isfinite(ema) else (
                0.95 * ema + 0.05 * rec["meta_loss"])
            if it % self.config.log_every == 0 or it == self.config.iterations - 1:
                rec["meta_loss_ema"] = ema
                rec["skipped_nonfinite"] = self.stats.skipped_nonfinite
                rec["elapsed_s"] = time.perf_counter() - t0
                history.append(rec)
                if self.log:
                    self.log(rec)
                bar.set_postfix(loss=f"{ema:.4f}", skipped=self.stats.skipped_nonfinite)
            if on_iteration:
                on_iteration(it)
        self.stats.wall_time_s += time.perf_counter() - t0
        return history


def jsonl_logger(path: str | Path) -> Callable[[dict], None]:
    """A ``log`` callback that appends one JSON record per line to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def log(rec: dict) -> None:
        with path.open("a") as f:
            f.write(json.dumps(rec) + "\n")

    return log


__all__ = ["MetaTrainer", "TrainConfig", "TrainStats", "jsonl_logger"]
