"""Run a set of method jobs (meta-train or tune, then evaluate), optionally in parallel.

A job is a plain dict, so it can be shipped to a worker process; each job seeds its own
generators from the run seed and its name, so the numbers do not depend on how many workers
run or in which order.
"""

from __future__ import annotations

import heapq
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch
from tqdm.auto import tqdm

from lft import checkpoint
from lft.meta.evaluate import evaluate, tune_learning_rate
from lft.meta.learners import Method, MethodConfig
from lft.meta.trainer import MetaTrainer, TrainConfig, jsonl_logger
from lft.perf import configure_allocator
from lft.tasks import build_family


def job_key(job: dict) -> str:
    """A file-name-safe identifier of a job, e.g. ``fo-lft``."""
    return job["label"].lower().replace("+", "-plus-")


def run_job(job: dict, progress: bool = True, threads: int | None = None) -> dict:
    """Meta-train (or tune) one method and evaluate it on the held-out test tasks.

    ``job["tests"]`` (optional) maps names to family configurations to test on instead of the
    training family: a fine-tuner meta-trained on one source tested on another.
    """
    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    family = build_family(job["family"])
    cfg = MethodConfig.from_dict(job["method"])
    out = Path(job["out"])
    record: dict = {"label": job["label"], "name": cfg.name, "oracle": cfg.oracle_kind}
    if cfg.learn_rule or cfg.learn_init:
        train_cfg = TrainConfig(**job["train"])
        method = Method(cfg, family, seed=train_cfg.seed)
        if job.get("init_from"):
            warm_start_init(method, job["init_from"])
            record["init_from"] = job["init_from"]
        log_path = out / "logs" / f"{job_key(job)}.jsonl"
        log_path.unlink(missing_ok=True)
        trainer = MetaTrainer(method, family, train_cfg, log=jsonl_logger(log_path))
        trainer.train(progress=progress)
        ckpt = checkpoint.save(out / "checkpoints" / f"{job_key(job)}.safetensors", method,
                               family, extra={"train": job["train"],
                                              "stats": trainer.stats.__dict__})
        record.update(train_stats=dict(trainer.stats.__dict__), checkpoint=str(ckpt))
    else:
        tune = job["tune"]
        best, scores = tune_learning_rate(cfg, family, tune["grid"], steps=job["steps"],
                                          n_tasks=tune["tasks"], seed=job["seed"],
                                          chunk=job.get("eval_chunk"))
        cfg.rule["lr"] = best
        method = Method(cfg, family, seed=job["seed"])
        record.update(tuned_lr=best, tuning_scores={str(k): v for k, v in scores.items()})
    record["method_config"] = cfg.to_dict()
    if "tests" in job:  # evaluate on each named test family (e.g. other image sources)
        record["tests"] = {}
        for name, test_family in job["tests"].items():
            curves = evaluate(method, build_family(test_family), n_tasks=job["test_tasks"],
                              steps=job["steps"], seed=job["test_seed"], progress=progress,
                              chunk=job.get("eval_chunk", 250))
            record["tests"][name] = {k: c.values.tolist() for k, c in curves.items()}
    else:
        curves = evaluate(method, family, n_tasks=job["test_tasks"], steps=job["steps"],
                          seed=job["test_seed"], progress=progress)
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


def _worker(job: dict) -> dict:
    configure_allocator()
    return run_job(job, progress=False, threads=1)


def longest_first(jobs: list[dict]) -> list[int]:
    """Indices of ``jobs`` by decreasing ``estimate_s`` (0 when absent), ties in list order."""
    return sorted(range(len(jobs)), key=lambda i: -float(jobs[i].get("estimate_s") or 0.0))


def makespan_s(estimates: list[float], workers: int, setup_s: float = 0.0) -> float:
    """Wall seconds for jobs of these single-worker costs, dealt longest first to ``workers``
    processes that each start with ``setup_s`` of work."""
    loads = [setup_s] * max(1, workers)
    heapq.heapify(loads)
    for cost in sorted(estimates, reverse=True):
        heapq.heapreplace(loads, loads[0] + cost)
    return max(loads)


def run_jobs(jobs: list[dict], workers: int = 1, progress: bool = True) -> list[dict]:
    """Run ``jobs``; with ``workers > 1`` in separate processes of one thread each.

    Workers take the jobs with the largest ``job["estimate_s"]`` (optional) first, which
    shortens the run when a few jobs dominate; results come back in the order of ``jobs``.
    """
    if workers <= 1:
        return [run_job(j, progress=progress) for j in tqdm(jobs, desc="methods",
                                                            disable=not progress)]
    results: dict[int, dict] = {}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futs = {pool.submit(_worker, jobs[i]): i for i in longest_first(jobs)}
        for fut in tqdm(as_completed(futs), total=len(futs), desc="methods",
                        disable=not progress):
            results[futs[fut]] = fut.result()
    return [results[i] for i in range(len(jobs))]
