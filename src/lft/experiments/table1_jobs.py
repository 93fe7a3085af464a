"""Table 1's jobs, run one per worker process (one thread each), longest first.

A job is a :class:`~lft.experiments.uap_jobs.Table1TuneJob` (``kind`` ``tune``) or a
:class:`~lft.experiments.uap_jobs.Table1Job` (``learned`` or ``baseline``):

* ``tune``: one hand-designed rule on one image source at one lambda. Its step size is tuned
  on meta-training tasks (:func:`lft.meta.evaluate.tune_learning_rate`, validation loss
  averaged over the recorded steps), then the tuned rule's validation ASR and distortion at
  step K on the same tasks are measured: what the lambda selection
  (:func:`lft.experiments.table1.select_lambda`) reads, and the step sizes every later job uses.
* ``learned``: meta-train LFT, L2O or MAML at the selected lambda, save the checkpoint, test it
  on every test source (``test_tasks`` tasks, :func:`~lft.experiments.table1_eval.evaluate_uap`)
  and at every other lambda of the sweep (``sweep_tasks`` tasks, last step only).
* ``baseline``: a hand-designed rule with its tuned step size, tested likewise.

Each job seeds its own generators from the run seed, so the numbers do not depend on the number
of workers or the order. Worker processes are reused across jobs, so each loads the data and
the victims (and finds the victim's correctly classified images) once per source.
"""

from __future__ import annotations

import time

import torch

from lft.experiments.runner import meta_train
from lft.experiments.table1_eval import evaluate_uap
from lft.experiments.uap_jobs import Table1Job, Table1TuneJob
from lft.meta.evaluate import tune_learning_rate
from lft.meta.learners import Method, MethodConfig
from lft.meta.trainer import TrainConfig
from lft.seeding import generator as make_generator
from lft.tasks import as_groups, build_family


def job_key(job: Table1Job) -> str:
    """A file-name-safe identifier of a job, e.g. ``fo-lft-[mnist]-lam=0.01``."""
    return job.label.lower().replace("+", "-plus-").replace(" ", "-")


def _with_lr(config: dict, lr: float) -> MethodConfig:
    return MethodConfig.from_dict({**config, "rule": {**config["rule"], "lr": lr}})


def run_tune(job: Table1TuneJob) -> dict:
    """Tune a hand-designed rule's step size at one lambda; its validation ASR/distortion."""
    family = build_family(job.family)
    steps, n, seed = job.steps, job.tasks, job.seed
    cfg = MethodConfig.from_dict(job.method)
    best, scores = tune_learning_rate(cfg, family, job.grid, steps=steps, n_tasks=n,
                                      seed=seed, record=job.record)
    method = Method(_with_lr(job.method, best), family, seed)
    # the same tasks and random starts as the tuning run of the chosen step size
    groups = as_groups(family.sample(n, make_generator(seed, "lr-tuning-tasks")))
    init_gen = make_generator(seed, "lr-tuning-init")
    finals = [method.curve(t, steps, init_gen, "val", [steps]) for t in groups]
    asr = torch.cat([f["asr"][:, -1] for f in finals])
    dist = torch.cat([f["distortion"][:, -1] for f in finals])
    return {"name": cfg.name, "source": job.source, "lam": job.lam, "lr": best,
            "scores": {str(k): v for k, v in scores.items()}, "val_asr": float(asr.mean()),
            "val_distortion": float(dist.mean()), "tasks": n}


def _evaluate(method: Method, job: Table1Job) -> dict:
    """Per-task curves at ``job.record``'s steps and first steps to 75% ASR, per test source;
    the sweep's last-step values per lambda and test source."""
    steps = job.steps
    tests = {}
    for name, fam in job.tests.items():
        curves, hit = evaluate_uap(method, build_family(fam), job.test_tasks, steps,
                                   job.test_seed, job.record, job.threshold)
        tests[name] = {**{m: c.values.tolist() for m, c in curves.items()},
                       "first_hit": hit.tolist()}
    sweep = {}
    for lam, families in job.sweep.items():
        if job.sweep_lrs is not None:  # a hand-designed rule: its step size tuned at this lambda
            method = Method(_with_lr(job.method, job.sweep_lrs[lam]),
                            build_family(next(iter(families.values()))), job.seed)
        sweep[lam] = {}
        for name, fam in families.items():
            curves, _ = evaluate_uap(method, build_family(fam), job.sweep_tasks, steps,
                                     job.test_seed, [0, steps], None)
            sweep[lam][name] = {m: c.values.tolist() for m, c in curves.items()}
    return {"tests": tests, "sweep": sweep}


def run_learned(job: Table1Job, resume: bool = False) -> dict:
    """Meta-train a learned method (continuing a killed run's checkpoint when ``resume``),
    save its checkpoint, evaluate it."""
    family = build_family(job.family)
    cfg = MethodConfig.from_dict(job.method)
    train_cfg = TrainConfig(**job.train)
    method = Method(cfg, family, seed=train_cfg.seed)
    trainer, ckpt = meta_train(method, family, train_cfg, job.out, job_key(job), resume)
    return {"train_stats": dict(trainer.stats.__dict__), "checkpoint": str(ckpt),
            "method_config": cfg.to_dict(), **_evaluate(method, job)}


def run_baseline(job: Table1Job) -> dict:
    """Test a hand-designed rule with the step size tuned at the job's lambda."""
    cfg = _with_lr(job.method, job.lr)
    method = Method(cfg, build_family(next(iter(job.tests.values()))), job.seed)
    return {"tuned_lr": job.lr, "method_config": cfg.to_dict(), **_evaluate(method, job)}


KINDS = {"tune": run_tune, "learned": run_learned, "baseline": run_baseline}


def run_job(job: Table1Job | Table1TuneJob, resume: bool = False) -> dict:
    """Run one job; the record holds its label, kind, CPU and wall time. ``resume``: a
    meta-training job continues the checkpoint a killed run left."""
    t0, c0 = time.perf_counter(), time.process_time()
    kind = KINDS[job.kind]
    record = kind(job, resume) if kind is run_learned else kind(job)
    return {"label": job.label, "kind": job.kind, **record,
            "wall_time_s": time.perf_counter() - t0, "cpu_time_s": time.process_time() - c0}
