"""Run a set of method jobs (meta-train or tune, then evaluate), optionally in parallel.

A method job is a :class:`~lft.experiments.jobs.MethodJob` (typed, validated once, picklable,
so it can be shipped to a worker process); :func:`run_jobs` also runs the jobs of other kinds
(Table 1's and uap-rivals', :mod:`lft.experiments.uap_jobs`) with their own ``run``. Each job
seeds its own generators from the run seed and its name, so the numbers do not depend on how
many workers run or in which order.
"""

from __future__ import annotations

import heapq
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import torch
from tqdm.auto import tqdm

from lft import checkpoint
from lft.experiments.jobs import MethodJob
from lft.experiments.jobstore import JobStore
from lft.meta.evaluate import evaluate, tune_learning_rate
from lft.meta.learners import Method
from lft.meta.trainer import MetaTrainer, TrainConfig
from lft.perf import configure_allocator
from lft.resume import Run, run_config
from lft.tasks import build_family


def job_key(job: MethodJob | dict) -> str:
    """A file-name-safe identifier of a job, e.g. ``fo-lft``."""
    return _get(job, "label").lower().replace("+", "-plus-")


def _get(job: MethodJob | dict, name: str, default=None):
    """Field ``name`` of a typed job or of a plain-dict one (``default`` when absent/off)."""
    if isinstance(job, dict):
        return job.get(name, default)
    value = getattr(job, name, None)
    return default if value is None else value


def meta_train(method: Method, family, train_cfg: TrainConfig, out: str | Path, key: str,
               resume: bool = False, progress: bool = False, **config) -> tuple[MetaTrainer, Path]:
    """Meta-train ``method`` as the job run ``OUT/checkpoints/KEY.safetensors`` with its log
    ``OUT/logs/KEY.jsonl`` (:meth:`lft.resume.Run.job`), checkpointed every 100 iterations; with
    ``resume``, a checkpoint a killed run left there (same configuration) is continued, which
    reaches the same weights as an uninterrupted run. ``config``: more fields the run's
    configuration records (e.g. ``init_from``). Returns the trainer and the checkpoint."""
    trainer = MetaTrainer(method, family, train_cfg)
    run = Run.job(out, key)
    cfg = run_config(trainer, **config)
    run.start(trainer, cfg, resuming=resume and run.resumable(cfg))
    return trainer, run.train(trainer, cfg, progress=progress)


def run_job(job: MethodJob | dict, progress: bool = True, threads: int | None = None,
            resume: bool = False) -> dict:
    """Meta-train (or tune) one method and evaluate it on the held-out test tasks.

    ``job`` is a :class:`~lft.experiments.jobs.MethodJob` (a dict of its fields is read with
    :meth:`~lft.experiments.jobs.MethodJob.from_dict`). ``job.tests`` (optional) maps names to
    family configurations to test on instead of the training family: a fine-tuner
    meta-trained on one source tested on another; with ``job.record`` (optional) only those
    steps are measured there. A job that neither meta-learns nor has ``job.tune`` evaluates
    its rule as configured. ``resume``: continue the meta-training a killed run left in
    ``job.out`` (see :func:`meta_train`).
    """
    if not isinstance(job, MethodJob):
        job = MethodJob.from_dict(job)
    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    family = build_family(job.family)
    cfg = job.method_config()
    out = Path(job.out)
    record: dict = {"label": job.label, "name": cfg.name, "oracle": cfg.oracle_kind}
    if cfg.learn_rule or cfg.learn_init:
        train_cfg = job.train_config()
        method = Method(cfg, family, seed=train_cfg.seed)
        if job.init_from:
            warm_start_init(method, job.init_from)
            record["init_from"] = job.init_from
        more = {"init_from": job.init_from} if job.init_from else {}
        trainer, ckpt = meta_train(method, family, train_cfg, out, job_key(job), resume,
                                   progress, **more)
        record.update(train_stats=dict(trainer.stats.__dict__), checkpoint=str(ckpt))
    elif job.tune is not None:
        tune = job.tune
        best, scores = tune_learning_rate(cfg, family, tune["grid"], steps=job.steps,
                                          n_tasks=tune["tasks"], seed=job.seed,
                                          chunk=job.eval_chunk)
        cfg.rule["lr"] = best
        method = Method(cfg, family, seed=job.seed)
        record.update(tuned_lr=best, tuning_scores={str(k): v for k, v in scores.items()})
    else:  # a fixed rule (e.g. a learning rate tuned elsewhere): evaluate it as configured
        method = Method(cfg, family, seed=job.seed)
    record["method_config"] = cfg.to_dict()
    if job.tests is not None:  # evaluate on each named test family (e.g. other image sources)
        def on_tests(n_tasks: int, seed: int, purpose: str) -> dict:
            return {name: {k: c.values.tolist() for k, c in evaluate(
                method, build_family(test_family), n_tasks=n_tasks, steps=job.steps, seed=seed,
                progress=progress, chunk=_get(job, "eval_chunk", 250), purpose=purpose,
                record=job.record).items()} for name, test_family in job.tests.items()}

        record["tests"] = on_tests(job.test_tasks, job.test_seed, "test")
        if job.select_tasks is not None:  # meta-training images, for choices between variants
            record["select"] = on_tests(job.select_tasks, job.seed, "select")
    else:
        curves = evaluate(method, family, n_tasks=job.test_tasks, steps=job.steps,
                          seed=job.test_seed, progress=progress)
        record["curves"] = {k: c.values.tolist() for k, c in curves.items()}
    record["wall_time_s"] = time.perf_counter() - t0
    return record


def warm_start_init(method: Method, path: str | Path) -> None:
    """Start ``method``'s learned initialisation from the one in another checkpoint."""
    if not method.config.learn_init:
        raise ValueError("init_from needs a method that learns its initialisation")
    tensors, _ = checkpoint.read(path)
    if "init.theta0" not in tensors:
        raise ValueError(f"{path} holds no learned initialisation to start from")
    with torch.no_grad():
        method.init.theta0.copy_(tensors["init.theta0"])


def _worker(job: MethodJob, resume: bool = False) -> dict:
    configure_allocator()
    return run_job(job, progress=False, threads=1, resume=resume)


def prerequisites(jobs: list) -> list[int | None]:
    """For each job (typed or a dict), the index of the job it waits for (its ``after``
    names that job's label).

    Raises ``ValueError`` for an ``after`` that names no job of the run.
    """
    index = {_get(j, "label"): i for i, j in enumerate(jobs) if _get(j, "label") is not None}
    out: list[int | None] = []
    for j in jobs:
        after = _get(j, "after")
        if after is not None and after not in index:
            raise ValueError(f"job {_get(j, 'label')!r} runs after {after!r}, which is not a "
                             f"job of this run; choose from {sorted(index)}")
        out.append(None if after is None else index[after])
    return out


def priorities(jobs: list) -> list[float]:
    """Each job's ``estimate_s`` plus its longest chain of dependants': a job that unblocks
    long work counts as long, so it starts early.

    Raises ``ValueError`` for a bad ``after`` (:func:`prerequisites`) or a cycle.
    """
    before = prerequisites(jobs)
    prio: dict[int, float] = {}

    def total(i: int, seen: tuple[int, ...] = ()) -> float:
        if i in seen:
            raise ValueError(f"jobs {[_get(jobs[k], 'label') for k in seen]} wait for each "
                             "other; remove one of their after fields")
        if i not in prio:
            prio[i] = float(_get(jobs[i], "estimate_s") or 0.0) + max(
                (total(k, (*seen, i)) for k, b in enumerate(before) if b == i), default=0.0)
        return prio[i]

    return [total(i) for i in range(len(jobs))]


def longest_first(jobs: list, done: set[int] | None = None) -> list[int]:
    """Indices of the jobs not ``done`` that can start (their ``after`` job is ``done``), by
    decreasing :func:`priorities`, ties in list order; with ``done=None``, every job."""
    prio = priorities(jobs)
    if done is None:
        return sorted(range(len(jobs)), key=lambda i: -prio[i])
    ready = [i for i, b in enumerate(prerequisites(jobs))
             if i not in done and (b is None or b in done)]
    return sorted(ready, key=lambda i: -prio[i])


def makespan_s(estimates: list[float], workers: int, setup_s: float = 0.0) -> float:
    """Wall seconds for jobs of these single-worker costs, dealt longest first to ``workers``
    processes that each start with ``setup_s`` of work."""
    loads = [setup_s] * max(1, workers)
    heapq.heapify(loads)
    for cost in sorted(estimates, reverse=True):
        heapq.heapreplace(loads, loads[0] + cost)
    return max(loads)


def _init_worker() -> None:
    configure_allocator()
    torch.set_num_threads(1)


def run_jobs(jobs: list, workers: int = 1, progress: bool = True,
             store: JobStore | None = None, run=None, desc: str = "methods") -> list[dict]:
    """Run ``jobs``; with ``workers > 1`` in separate processes of one thread each: the one
    job runner of the reproductions.

    ``jobs`` are :class:`~lft.experiments.jobs.MethodJob` (or typed jobs of other kinds, or
    plain dicts, for their own ``run``). Workers take the jobs of largest :func:`priorities`
    first, which shortens the run when a few jobs dominate; a job whose ``after`` names
    another's label starts once that job has finished (e.g. one that warm-starts from its
    checkpoint). Results come back in the order of ``jobs``.
    ``store`` (optional) keeps each finished job's record and, resuming, supplies those of the
    jobs a killed run had finished (:class:`~lft.experiments.jobstore.JobStore`). ``run``
    (default :func:`run_job`) is the module-level function ``run(job, resume=False)`` that runs
    one job, for artefacts whose jobs are of other kinds (Table 1, uap-rivals); when resuming,
    it continues the meta-training a killed job left (``resume=True``).
    """
    store = store or JobStore(None)
    if run is None:
        one, remote, init = (lambda job, resume: run_job(job, progress, resume=resume)), \
            _worker, None
    else:
        one, remote, init = run, run, _init_worker
    results: dict[int, dict] = {}
    for i, job in enumerate(jobs):
        if (kept := store.done(job)) is not None:
            results[i] = kept
    pending = set(range(len(jobs))) - set(results)
    with tqdm(total=len(jobs), initial=len(results), desc=desc, disable=not progress,
              dynamic_ncols=True) as bar:
        if workers <= 1 or not pending:  # a pool's one-thread workers even for one job: a
            while len(results) < len(jobs):  # resumed run computes as the whole run did
                i = longest_first(jobs, set(results))[0]
                results[i] = one(jobs[i], store.resume)
                store.save(jobs[i], results[i])
                bar.update()
            return [results[i] for i in range(len(jobs))]
        with ProcessPoolExecutor(max_workers=workers, initializer=init) as pool:
            running: dict = {}
            while pending or running:
                free = workers - len(running)
                for i in [k for k in longest_first(jobs, set(results)) if k in pending][:free]:
                    running[pool.submit(remote, jobs[i], store.resume)] = i
                    pending.discard(i)
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    i = running.pop(fut)
                    results[i] = fut.result()
                    store.save(jobs[i], results[i])
                    bar.update()
    return [results[i] for i in range(len(jobs))]
