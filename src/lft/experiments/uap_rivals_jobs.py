"""``uap-rivals``' jobs: phase 1 (eps and tuning on meta-training tasks) and phase 2 (meta-train
and test), each a :class:`~lft.experiments.uap_jobs.UAPRivalsJob` a worker process can run
(:func:`run_all`)."""

from __future__ import annotations

import dataclasses
import time

import torch

from lft.experiments.jobstore import JobStore
from lft.experiments.runner import run_jobs
from lft.experiments.uap_jobs import UAPRivalsJob
from lft.experiments.uap_rivals_spec import (  # noqa: F401 - job functions read them by name
    ART_METHODS,
    ARTEFACT,
    RESIDUALS,
    ROW_OF,
    RULE_OF,
    SOURCES,
    TUNED,
    UAPRivalsProfile,
    art_kwargs,
    record_steps,
    uap_config,
)
from lft.meta.evaluate import tune_learning_rate
from lft.meta.learners import Method, MethodConfig, preset, with_lstm_options
from lft.meta.unroll import trajectory
from lft.seeding import derive_seed
from lft.seeding import generator as make_generator
from lft.tasks import as_groups, build_family

# ------------------------------------------------------------------ phase 1: eps and tuning

def _tune_tasks(family, prof: UAPRivalsProfile, seed: int):
    """The meta-training tasks every tuning decision of a source reads (one batch)."""
    return family.sample(prof.tune_tasks, make_generator(seed, "uap-rivals-tune-tasks"))


def _best_art(scores: list[dict]) -> dict:
    return max(scores, key=lambda s: (s["val_asr"], -s["queries"]))


def art_steps_to_add(scores: list[dict]) -> list[dict]:
    """The ART settings to try next so the best one's step is not on the edge of the steps
    tried: the best setting with half (twice) its ``step_fraction`` when no setting with the
    same other entries has a smaller (larger) one. Empty: the best step is bracketed."""
    best = _best_art(scores)["setting"]
    others = {k: v for k, v in best.items() if k != "step_fraction"}
    steps = [s["setting"]["step_fraction"] for s in scores
             if {k: v for k, v in s["setting"].items() if k != "step_fraction"} == others]
    step = best["step_fraction"]
    return ([{**best, "step_fraction": step / 2}] if step == min(steps) else []) + \
        ([{**best, "step_fraction": step * 2}] if step == max(steps) else [])


def tune_art(tasks, attacker: str, eps: float, prof: UAPRivalsProfile, seed: int) -> dict:
    """The grid's ART setting with the highest mean validation ASR on ``tasks`` (ties: fewer
    queries); every setting's score is kept. With the profile's ``widen``, the best setting's
    step is halved or doubled while it is the smallest or largest tried (at most ``widen``
    rounds, :func:`art_steps_to_add`), as the rules' step sizes are."""
    from lft.rivals.art import art_uap_batch

    def score(setting: dict) -> dict:
        kw = art_kwargs(setting, eps, prof)
        r = art_uap_batch(tasks, attacker, eps=eps, norm=prof.norm,
                          seed=derive_seed(seed, "uap-rivals-tune-art"), **kw)
        asr = float(tasks.metrics(r.theta, "val")["asr"].mean())
        return {"setting": setting, "kwargs": kw, "val_asr": asr,
                "queries": float(r.queries.mean())}

    scores = [score(setting) for setting in prof.art[attacker]]
    for _ in range(prof.widen or 0):
        extra = art_steps_to_add(scores)
        if not extra:
            break
        scores += [score(setting) for setting in extra]
    return {"attacker": attacker, "eps": eps, "best": _best_art(scores), "scores": scores}


def tune_rule(name: str, family, eps: float, prof: UAPRivalsProfile, seed: int) -> dict:
    """Tune a hand-designed rule's step size under the budget on meta-training tasks
    (:func:`lft.meta.evaluate.tune_learning_rate`: validation loss averaged over the steps),
    and its validation ASR at the last step on the same tasks and starts."""
    steps = prof.steps
    cfg = preset(RULE_OF[name], horizon=steps)
    record = list(range(0, steps + 1, prof.record["every"])) + [steps]
    best, scores = tune_learning_rate(cfg, family, prof.lr_grid[name], steps=steps,
                                      n_tasks=prof.tune_tasks, seed=seed, record=record,
                                      widen=prof.widen or 0)
    method = Method(preset(RULE_OF[name], base_lr=best, horizon=steps), family, seed)
    groups = as_groups(family.sample(prof.tune_tasks, make_generator(seed, "lr-tuning-tasks")))
    init_gen = make_generator(seed, "lr-tuning-init")
    asr = torch.cat([method.curve(t, steps, init_gen, "val", [steps])["asr"][:, -1]
                     for t in groups])
    return {"name": name, "eps": eps, "lr": best, "scores": {str(k): v for k, v in
                                                              scores.items()},
            "val_asr": float(asr.mean())}


def choose_eps(candidates: dict[float, float], target: list[float]) -> tuple[float, bool]:
    """The radius whose reference validation ASR lies in ``target = [low, high]``, nearest
    its middle (ties: the smaller radius); if none does, the one nearest the range. Returns
    ``(eps, inside)``."""
    low, high = target
    mid = (low + high) / 2
    inside = [e for e, a in candidates.items() if low <= a <= high]
    if inside:
        return min(inside, key=lambda e: (abs(candidates[e] - mid), e)), True
    gap = {e: max(low - a, a - high) for e, a in candidates.items()}
    return min(gap, key=lambda e: (gap[e], e)), False


def run_selection(job: UAPRivalsJob) -> dict:
    """Phase 1 for one source: the eps search, then ART's and the rules' tuning at that eps;
    meta-training tasks only."""
    from lft.rivals import art

    prof, seed, source = job.profile, job.seed, job.source
    t0 = time.perf_counter()
    family = build_family(uap_config(source, prof, job.data_dir, None))
    base = _tune_tasks(family, prof, seed)
    with_art = art.available()
    search = []
    for eps in prof.eps_grid[source]:
        if with_art:
            tasks = dataclasses.replace(base, eps=float(eps), norm=prof.norm)
            rec = tune_art(tasks, "pgd", float(eps), prof, seed)
            search.append({"eps": float(eps), "val_asr": rec["best"]["val_asr"],
                           "art_pgd": rec})
        else:
            budgeted = build_family(uap_config(source, prof, job.data_dir, eps))
            rec = tune_rule("pgd", budgeted, float(eps), prof, seed)
            search.append({"eps": float(eps), "val_asr": rec["val_asr"], "pgd": rec})
    eps, inside = choose_eps({s["eps"]: s["val_asr"] for s in search}, prof.target_asr)
    chosen = next(s for s in search if s["eps"] == eps)
    family = build_family(uap_config(source, prof, job.data_dir, eps))
    out = {"source": source, "eps": eps, "norm": prof.norm, "inside_target": inside,
           "reference": "art-pgd" if with_art else "pgd", "search": search,
           "art": {}, "rules": {}}
    if with_art:
        out["art"]["art-pgd"] = chosen["art_pgd"]
        tasks = dataclasses.replace(base, eps=eps, norm=prof.norm)
        out["art"]["art-fgsm"] = tune_art(tasks, "fgsm", eps, prof, seed)
    for name in TUNED:
        out["rules"][name] = (chosen["pgd"] if not with_art and name == "pgd"
                              else tune_rule(name, family, eps, prof, seed))
    out["wall_time_s"] = time.perf_counter() - t0
    return out


# ------------------------------------------------------------------ phase 2: test

def test_batches(family, prof: UAPRivalsProfile, seed: int):
    """The held-out test tasks, exactly as :func:`lft.meta.evaluate.evaluate` samples them
    (the meta-test part, the ``"test-tasks"`` stream, chunks of ``eval_chunk``)."""
    family = family.for_part("meta-test")
    task_gen = make_generator(seed, "test-tasks")
    batches, done, n = [], 0, prof.test_tasks
    while done < n:
        b = min(prof.eval_chunk, n - done)
        batches += as_groups(family.sample(b, task_gen))
        done += b
    return batches


@torch.no_grad()
def run_fine_tuner(method: Method, batches, steps: int, keep: list[int], seed: int) -> dict:
    """Fine-tune every test batch from the ``"test-run"`` starts, as ``evaluate`` does:
    per-task ``asr`` and ``distortion`` ``(tasks, len(keep))`` at ``keep``'s steps, and the
    fine-tuning seconds per task (``wall_time_s``: the tasks of a batch run together; the
    metrics' own cost is not counted)."""
    run_gen = make_generator(seed, "test-run")
    keep = set(keep)
    per: dict[str, list[torch.Tensor]] = {"asr": [], "distortion": []}
    spent, n = 0.0, 0
    for tasks in batches:
        t = time.perf_counter()
        theta, state = method.start(tasks, run_gen)
        theta = theta.detach()
        spent += time.perf_counter() - t
        rows = [tasks.metrics(theta, "test")] if 0 in keep else []
        steps_run = trajectory(method.rule, method.oracle, tasks, theta, state, steps, run_gen)
        for k in range(1, steps + 1):
            t = time.perf_counter()
            theta, state = next(steps_run)
            spent += time.perf_counter() - t
            if k in keep:
                rows.append(tasks.metrics(theta, "test"))
        for m in per:
            per[m].append(torch.stack([r[m] for r in rows], 1))
        n += tasks.size
    return {**{m: torch.cat(v) for m, v in per.items()}, "wall_time_s": spent / n,
            "images_per_step": int(batches[0].data["train"][0].shape[1]), "steps": sorted(keep)}


def run_art(attacker: str, settings: dict, batches, eps: float, norm: str, seed: int) -> dict:
    """ART on every test batch (the fine-tuning images only), scored on the test images:
    per-task ``asr``, ``distortion``, ``queries`` (images back-propagated), ``predictions``
    and ``wall_time_s``."""
    from lft.rivals.art import art_uap_batch

    per: dict[str, list[torch.Tensor]] = {}
    first = 0
    for tasks in batches:
        r = art_uap_batch(tasks, attacker, eps=eps, norm=norm, first_index=first,
                          seed=derive_seed(seed, f"uap-rivals-test-{attacker}"), **settings)
        m = tasks.metrics(r.theta, "test")
        for key, v in (("asr", m["asr"]), ("distortion", m["distortion"]),
                       ("queries", r.queries), ("predictions", r.predictions),
                       ("wall_time_s", r.wall_time_s)):
            per.setdefault(key, []).append(v.float())
        first += tasks.size
    return {k: torch.cat(v) for k, v in per.items()}


def meta_seed_of(seed: int, k: int) -> int:
    """The meta-training seed of the ``k``-th run (independent streams per run and seed)."""
    return derive_seed(seed, f"uap-rivals-meta-seed-{k}") % 2**31


def learned(prof: UAPRivalsProfile) -> tuple[str, str]:
    """The learned methods of a profile: FO-LFT and its ``residual`` rule."""
    return ("lft", prof.residual)


def base_row(residual: str) -> str:
    """The tuned method whose step size a residual rule starts from (``lft+signsgd``: pgd)."""
    return ROW_OF[residual.split("+")[1]]


def learned_config(name: str, prof: UAPRivalsProfile, lrs: dict[str, float]) -> MethodConfig:
    """FO-LFT as in Table 1, or the residual rule on its base's tuned step size (``lrs``: row
    name -> tuned step size); ``lft+signsgd``'s LSTM correction is bounded at that step (a
    step per pixel), the others' at the LSTM's default bound. The meta-loss weights steps as
    the profile's ``weighting`` says (default: uniformly)."""
    steps, trunc = prof.steps, prof.truncation
    if name == "lft":
        cfg = preset("lft", horizon=steps, truncation=trunc)
    else:
        base_lr = lrs[base_row(name)]
        cfg = preset(name, base_lr=base_lr, horizon=steps, truncation=trunc)
        if name == "lft+signsgd":  # its base's lr is a step per pixel: bound the correction
            cfg.rule = with_lstm_options(cfg.rule, {"output_scale": base_lr})
    weighting = (prof.weighting or {}).get("lft" if name == "lft" else "residual")
    if weighting is not None:
        cfg.weighting = weighting
    cfg.validate()
    return cfg


def run_learned(job: UAPRivalsJob, resume: bool = False) -> dict:
    """Phase 2: meta-train one learned method (one seed) under the budget, save it, test it
    (``resume``: continue the checkpoint a killed run left)."""
    from lft.experiments.runner import meta_train
    from lft.meta.trainer import TrainConfig

    prof, sel = job.profile, job.selection
    t0 = time.perf_counter()
    family = build_family(uap_config(job.source, prof, job.data_dir, sel["eps"]))
    cfg = learned_config(job.method, prof, {k: r["lr"] for k, r in sel["rules"].items()})
    budget = "lft" if job.method == "lft" else "residual"
    train = {"iterations": prof.iterations[budget], "meta_batch": prof.meta_batch,
             "meta_lr": prof.meta_lr[budget], "clip": 1.0,
             "seed": meta_seed_of(job.seed, job.meta_seed), "log_every": 10,
             "lr_decay": prof.lr_decay}
    method = Method(cfg, family, seed=train["seed"])
    key = f"{job.source}-{job.method.replace('+', '-plus-')}-seed{job.meta_seed}"
    trainer, ckpt = meta_train(method, family, TrainConfig(**train), job.out, key, resume)
    batches = test_batches(family, prof, job.seed)
    result = run_fine_tuner(method, batches, prof.steps, record_steps(prof), job.seed)
    return {"curves": result, "method_config": cfg.to_dict(), "train": train,
            "train_stats": dict(trainer.stats.__dict__), "checkpoint": str(ckpt),
            "job_wall_time_s": time.perf_counter() - t0}


def run_fixed(job: UAPRivalsJob) -> dict:
    """Phase 2: the tuned rules and ART's attacks (when installed) on one source's test tasks."""
    from lft.rivals import art

    prof, sel, seed = job.profile, job.selection, job.seed
    t0 = time.perf_counter()
    family = build_family(uap_config(job.source, prof, job.data_dir, sel["eps"]))
    batches = test_batches(family, prof, seed)
    only = job.only or [*TUNED, *ART_METHODS]
    out = {}
    for name in [n for n in TUNED if n in only]:
        cfg = preset(RULE_OF[name], base_lr=sel["rules"][name]["lr"], horizon=prof.steps)
        out[name] = {"curves": run_fine_tuner(Method(cfg, family, seed), batches,
                                              prof.steps, record_steps(prof), seed),
                     "method_config": cfg.to_dict()}
    if art.available():
        for name in [n for n in ART_METHODS if n in only]:
            kw = sel["art"][name]["best"]["kwargs"]
            out[name] = {"values": run_art(name.split("-")[1], kw, batches, sel["eps"],
                                           sel["norm"], seed), "settings": kw}
    return {"methods": out, "job_wall_time_s": time.perf_counter() - t0}


KINDS = {"select": run_selection, "learned": run_learned, "fixed": run_fixed}


def run_job(job: UAPRivalsJob, resume: bool = False) -> dict:
    """Run one job of any kind (a worker process can take it); ``resume``: a meta-training job
    continues the checkpoint a killed run left."""
    kind = KINDS[job.kind]
    return kind(job, resume) if kind is run_learned else kind(job)


def run_all(jobs: list[UAPRivalsJob], workers: int, progress: bool = False, desc: str = "jobs",
            run=None, store: JobStore | None = None) -> list[dict]:
    """``jobs`` with the reproductions' one job runner
    (:func:`lft.experiments.runner.run_jobs`: ``workers`` processes of one thread each, in this
    one with one worker), started in list order; results in the order of ``jobs``. ``run``
    (default :func:`run_job`) runs one job; ``store`` keeps finished jobs and, resuming,
    supplies them (:class:`~lft.experiments.jobstore.JobStore`)."""
    return run_jobs(jobs, workers, progress, store, run=run or run_job, desc=desc)
