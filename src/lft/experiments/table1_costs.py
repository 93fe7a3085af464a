"""What Table 1's jobs cost: measured constants and an estimate of each job and of the run.

Measured on this project's 2-core machine, one thread, CPU time (``time.process_time``, so other
jobs loading the machine do not inflate it), default victims (their subnormal weights flushed,
:func:`lft.attacks.victims.flush_denormals_`; fast input gradients,
:class:`lft.attacks.lenet.InputGradConv2d`), 10 fine-tuning and 20 test images per task.
Scripts: ``benchmarks/table1_costs.py``.

=================================  ==========  ==========
per task and step (ms)             MNIST       CIFAR-10
=================================  ==========  ==========
fine-tuning step, hand rule        STEP_HAND
fine-tuning step, LSTM rule        STEP_LSTM
metrics (victim on test images)    METRICS
=================================  ==========  ==========

Meta-training, one meta-iteration of 8 tasks x 200 steps (10 truncated windows of 20): see
:data:`TRAIN_ITERATION_S`. The paper profile's estimate is in :func:`makespan_s` terms: the jobs
dealt longest first to 2 worker processes.
"""

from __future__ import annotations

import heapq

#: ms per task and fine-tuning step, gradient + rule update, no metrics
STEP_MS = {("mnist", "hand"): 1.3, ("cifar10", "hand"): 1.1,
           ("mnist", "lstm"): 1.7, ("cifar10", "lstm"): 1.5}
#: ms per task to measure the metrics once (victim forward on the task's 20 test images)
METRICS_MS = {"mnist": 1.2, "cifar10": 1.4}
#: ms per task to measure the ASR of a pending task between recorded steps
ASR_MS = METRICS_MS
#: assumed fraction of the unrecorded steps at which a task is still below 75% ASR
PENDING_FRACTION = 0.3
#: seconds per meta-iteration of 8 tasks (MAML: 5 inner steps, second order)
TRAIN_ITERATION_S = {("lft", "mnist"): 6.0, ("lft", "mnist+cifar10"): 6.0,
                     ("l2o", "mnist"): 13.0, ("l2o", "mnist+cifar10"): 13.0,
                     ("maml", "mnist"): 0.5}
#: seconds per worker and source to load data and victim and classify every image once
SETUP_S = 15.0


def _kind(method: dict) -> str:
    return "lstm" if method["rule"]["type"] in ("lstm", "sum") else "hand"


def eval_s(method: dict, source: str, tasks: int, steps: int, recorded: int,
           tracked: bool) -> float:
    """Seconds to test one method on ``tasks`` tasks of one source (both, for the mix)."""
    total = 0.0
    for s in ([source] if source != "mnist+cifar10" else ["mnist", "cifar10"]):
        per_task = steps * STEP_MS[(s, _kind(method))] + recorded * METRICS_MS[s]
        if tracked:
            per_task += PENDING_FRACTION * (steps + 1 - recorded) * ASR_MS[s]
        total += tasks * per_task / 1e3
    return total


def estimate_s(job: dict) -> float:
    """Estimated CPU seconds of one job (:mod:`lft.experiments.table1_jobs`)."""
    steps, method = job["steps"], job["method"]
    if job["kind"] == "tune":
        s = job["family"]["source"]
        per_lr = eval_s(method, s, job["tasks"], steps, len(job["record"]), False)
        return (len(job["grid"]) + 1) * per_lr
    total = sum(eval_s(method, s, job["test_tasks"], steps, len(job["record"]), True)
                for s in job["tests"])
    total += sum(eval_s(method, s, job["sweep_tasks"], steps, 2, False)
                 for per in job["sweep"].values() for s in per)
    if job["kind"] == "learned":
        key = (method["name"], job["train_source"])
        total += job["train"]["iterations"] * TRAIN_ITERATION_S[key] * \
            job["train"]["meta_batch"] / 8
    return total


def makespan_s(jobs: list[dict], workers: int) -> float:
    """Wall seconds for ``jobs`` dealt longest first to ``workers`` processes (each also
    loading the data of both sources once)."""
    loads = [2 * SETUP_S] * max(1, workers)
    heapq.heapify(loads)
    for cost in sorted((j.get("estimate_s") or estimate_s(j) for j in jobs), reverse=True):
        heapq.heapreplace(loads, loads[0] + cost)
    return max(loads)
