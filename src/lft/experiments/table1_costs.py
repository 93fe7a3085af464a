"""What Table 1's jobs cost: measured constants and an estimate of each job and of the run.

Measured on this project's 2-core machine, one thread, CPU time (``time.process_time``, so other
jobs loading the machine inflate it little), default victims (their subnormal weights flushed,
:func:`lft.tasks.victims.flush_denormals_`, which made the CIFAR-10 victim 2.4x faster; fast
input gradients, :class:`lft.models.lenet.InputGradConv2d`, 1.7x on a forward + backward), 10
fine-tuning and 20 test images per task, 100 tasks at once (``measure`` re-measures them):

==============================================  =====  ========
per task                                        MNIST  CIFAR-10
==============================================  =====  ========
fine-tuning step, hand-designed rule (ms)       1.22   1.61
fine-tuning step, LSTM rule (ms)                1.45   1.98
metrics once (victim, 20 test images, ms)       1.10   1.20
==============================================  =====  ========

A meta-iteration of 8 tasks x 200 steps (windows of 20) costs 6.0 s (LFT) and 11.2 s (L2O) on
MNIST tasks, 8.6 s and 13.3 s on MNIST+CIFAR-10 tasks; one of MAML (8 tasks, 5 steps) 0.22 s.
(Before the two victim fixes a step with metrics cost 3.4 ms on MNIST and 6.9 ms on CIFAR-10.)
A 1/10-size paper run took 1.09x the CPU time this model gave its table jobs and 1.22x for its
tuning jobs; :data:`CALIBRATION` scales every estimate by 1.1.

Paper profile (``python -m lft.experiments.table1_measure``), estimated CPU seconds per job:

* tuning, 24 jobs (3 rules x 2 sources x 4 lambdas; 3 step sizes + the chosen one's ASR run,
  16 tasks x 200 steps, loss recorded every 5th step): 20 s (MNIST) and 26 s (CIFAR-10) each,
  552 s in all: **4.9 min** on 2 workers;
* FO-LFT [MNIST] 1 058 s (50 meta-iterations 332 s, tests: 500 tasks per source at the chosen
  lambda, 100 per source at each of the 3 other lambdas), FO-L2O [MNIST] 1 345 s, FO-LFT
  [MNIST+CIFAR-10] 1 198 s, FO-L2O [MNIST+CIFAR-10] 1 460 s, MAML [MNIST] 346 s, each
  hand-designed rule 273 s (MNIST) + 348 s (CIFAR-10): 7 270 s in all, **62.9 min** on 2
  workers (dealt longest first);
* with the set-up and the report, about **68 min** on 2 cores.
"""

from __future__ import annotations

#: ms per task and fine-tuning step, gradient + rule update, no metrics
STEP_MS = {("mnist", "hand"): 1.22, ("cifar10", "hand"): 1.61,
           ("mnist", "lstm"): 1.45, ("cifar10", "lstm"): 1.98}
#: ms per task to measure the metrics once (victim forward on the task's 20 test images)
METRICS_MS = {"mnist": 1.10, "cifar10": 1.20}
#: ms per task to measure the ASR of a pending task between recorded steps
ASR_MS = {"mnist": 1.11, "cifar10": 1.25}
#: assumed fraction of the unrecorded steps at which a task is still below 75% ASR
PENDING_FRACTION = 0.3
#: seconds per meta-iteration of 8 tasks (MAML: 5 inner steps, second order)
TRAIN_ITERATION_S = {("lft", "mnist"): 6.03, ("lft", "mnist+cifar10"): 8.58,
                     ("l2o", "mnist"): 11.24, ("l2o", "mnist+cifar10"): 13.34,
                     ("maml", "mnist"): 0.22}
#: seconds per worker and source to load data and victim and classify every image once
SETUP_S = 6.0
#: measured over estimated CPU time of the jobs of a 1/10-size paper run (50 test tasks, 10
#: sweep tasks, 4 tuning tasks, 2 meta-iterations): 1.09 for the table's jobs (0.83-1.23 each),
#: 1.22 for the tuning jobs (building each job's families, ~1 s, weighs more in small jobs)
CALIBRATION = 1.1


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


def estimate_s(job) -> float:
    """Estimated CPU seconds of one job (a :class:`~lft.experiments.uap_jobs.Table1TuneJob` or
    :class:`~lft.experiments.uap_jobs.Table1Job`), calibrated."""
    return CALIBRATION * _model_s(job)


def _model_s(job) -> float:
    steps, method = job.steps, job.method
    if job.kind == "tune":
        s = job.family["source"]
        per_lr = eval_s(method, s, job.tasks, steps, len(job.record), False)
        return (len(job.grid) + 1) * per_lr
    total = sum(eval_s(method, s, job.test_tasks, steps, len(job.record), True)
                for s in job.tests)
    total += sum(eval_s(method, s, job.sweep_tasks, steps, 2, False)
                 for per in job.sweep.values() for s in per)
    if job.kind == "learned":
        key = (method["name"], job.train_source)
        total += job.train["iterations"] * TRAIN_ITERATION_S[key] * job.train["meta_batch"] / 8
    return total


def makespan_s(jobs: list, workers: int) -> float:
    """Wall seconds for ``jobs`` (Table 1's typed jobs) dealt longest first to ``workers``
    processes (each also loading the data of both sources once)."""
    from lft.experiments.runner import makespan_s as deal

    return deal([j.estimate_s or estimate_s(j) for j in jobs], workers, 2 * SETUP_S)
