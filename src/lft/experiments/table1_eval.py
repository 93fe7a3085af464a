"""Table 1's evaluation: sparse metric curves plus the exact steps to 75% ASR of every task.

:func:`evaluate_uap` fine-tunes the same held-out tasks from the same random starts as
:func:`lft.meta.evaluate.evaluate` (same ``"test-*"`` streams, same chunks), so its curves equal
``evaluate(..., record=record)``'s. On UAP tasks, measuring the metrics (a victim forward pass
on the task's test images) costs about as much as the fine-tuning step itself, so the metrics
are recorded only at ``record``'s steps; between them, only tasks that have not yet reached the
threshold have their ASR measured (alone, on those tasks), so each task's first step with
``ASR >= threshold`` is exact at little cost once most tasks have reached it.
"""

from __future__ import annotations

import torch

from lft.meta.evaluate import Curve
from lft.meta.learners import Method, recorded_steps
from lft.seeding import generator as make_generator
from lft.tasks.base import TaskBatch, TaskFamily, as_groups


@torch.no_grad()
def run_tasks(method: Method, tasks: TaskBatch, steps: int, generator: torch.Generator,
              keep: set[int], threshold: float | None
              ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One batch: ``({metric: (B, len(keep))}, first step with ASR >= threshold (B,), NaN if
    never)``: :meth:`Method.curve` with a per-step look at the tasks still below the
    threshold (``threshold=None``: no tracking)."""
    hit = torch.full((tasks.size,), float("nan"))

    def track(k: int, theta: torch.Tensor, metrics: dict | None) -> None:
        if threshold is None:
            return
        pending = torch.isnan(hit)
        if metrics is not None:
            hit[pending & (metrics["asr"] >= threshold)] = k
        elif pending.any():
            idx = pending.nonzero().squeeze(1)
            asr = tasks.asr(theta[idx], "test", idx)
            hit[idx[asr >= threshold]] = k

    curves = method.curve(tasks, steps, generator, "test", sorted(keep), on_step=track)
    return curves, hit


def evaluate_uap(method: Method, family: TaskFamily, n_tasks: int, steps: int, seed: int = 0,
                 record=None, threshold: float | None = 0.75, chunk: int = 250
                 ) -> tuple[dict[str, Curve], torch.Tensor]:
    """Curves at ``record``'s steps (default every step) on ``n_tasks`` held-out tasks, and
    each task's first step with ``ASR >= threshold`` within ``steps`` (NaN if none; all NaN
    when ``threshold`` is ``None``, which skips the per-step ASR of the tracking)."""
    method.check_family(family)
    family = family.for_part("meta-test")
    task_gen = make_generator(seed, "test-tasks")
    run_gen = make_generator(seed, "test-run")
    keep = recorded_steps(steps, record)
    parts: dict[str, list[torch.Tensor]] = {}
    hits: list[torch.Tensor] = []
    done = 0
    while done < n_tasks:
        b = min(chunk, n_tasks - done)
        for tasks in as_groups(family.sample(b, task_gen)):
            curves, hit = run_tasks(method, tasks, steps, run_gen, set(keep), threshold)
            for name, v in curves.items():
                parts.setdefault(name, []).append(v)
            hits.append(hit)
        done += b
    return ({name: Curve(name, torch.cat(vs), keep) for name, vs in parts.items()},
            torch.cat(hits))
