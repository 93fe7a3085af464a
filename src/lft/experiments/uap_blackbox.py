"""Black-box rows of ``uap-rivals``: ZO-LFT against zeroth-order UAP rivals at one query budget.

``lft reproduce uap-rivals --profile black-box`` (or ``black-box-quick``) runs the black-box
half of the fixed-budget UAP comparison, on the *same* radius ``eps`` and the *same* held-out
tasks as the white-box profile it extends (``paper-kappa``; ``quick``): the same selection
on meta-training tasks (:func:`lft.experiments.uap_rivals.run_selection`, hence the same
``eps``) and the same test batches and random starts. Only the victim's outputs are used:

* ``lft`` (oracle ``zo``): the paper's LFT meta-trained under the budget on zeroth-order
  estimates, once per meta-seed;
* the zeroth-order rivals of :mod:`lft.experiments.zo_rivals`: ZO-signSGD with projection
  (Liu et al.; projected sign steps on finite-difference estimates), ZO-SGD and ZO-Adam, each
  on the history estimator and on plain Gaussian directions, tuned for every budget on
  meta-training tasks.

Every method spends 20 directions plus the base point per step (21 loss evaluations of the
task's 10 fine-tuning images); rows carry ``queries`` in loss evaluations and ``images`` sent to
the victim, and paired ``versus`` rows give ZO-LFT minus each rival at each budget.
"""

from __future__ import annotations

import time
from pathlib import Path

from lft.experiments import uap_rivals_jobs as ur
from lft.experiments import zo_rivals
from lft.experiments.jobstore import JobStore
from lft.experiments.results import machine, results_document, utc_now, write_json
from lft.experiments.uap_jobs import UAPRivalsJob
from lft.experiments.uap_rivals_spec import SUBSPACE, UAPRivalsProfile
from lft.meta.evaluate import Curve
from lft.meta.learners import Method, MethodConfig, preset, with_lstm_options
from lft.meta.subspace import fit_subspace
from lft.oracles import estimator_name, queries_per_step
from lft.tasks import build_family


def _grid(prof: UAPRivalsProfile) -> dict:
    """The ZO rivals' step-size grids: the white-box rules' grids (signSGD: pgd's)."""
    return {"signsgd": prof.lr_grid["pgd"], "sgd": prof.lr_grid["sgd"],
            "adam": prof.lr_grid["adam"]}


def _resolve(oracle, sel: dict) -> dict:
    """A profile's oracle entry: a configuration, or :data:`SUBSPACE`, the basis
    :func:`run_select` fitted for the source."""
    return dict(sel["subspace"]["oracle"]) if oracle == SUBSPACE else dict(oracle)


def fit_query_subspace(job: UAPRivalsJob, sel: dict, family_config: dict) -> dict:
    """The source's query basis (:func:`lft.meta.fit_subspace`), fitted along the trajectories
    of the white-box rules' tuned SGD on meta-training tasks, written under ``OUT/bases``."""
    prof, spec = job.profile, job.profile.black_box["subspace"]
    reference = preset("sgd", base_lr=sel["rules"]["sgd"]["lr"], horizon=prof.steps)
    t0 = time.perf_counter()
    fitted = fit_subspace(Path(job.out) / "bases" / f"{job.source}.safetensors", reference,
                          build_family(family_config), q=spec["q"], n_tasks=spec["tasks"],
                          steps=prof.steps, seed=job.seed)
    return {**fitted, "reference": reference.to_dict(), "fit_s": time.perf_counter() - t0}


def run_select(job: UAPRivalsJob) -> dict:
    """The white-box profile's selection (eps and its tunings), the query subspace if the
    profile uses one, then every ZO rival's step size for every budget at that eps;
    meta-training tasks only."""
    sel = ur.run_selection(job)
    prof, bb = job.profile, job.profile.black_box
    family = ur.uap_config(job.source, prof, job.data_dir, sel["eps"])
    if SUBSPACE in (*bb["oracles"], bb["oracle"]):
        sel["subspace"] = fit_query_subspace(job, sel, family)
    t0 = time.perf_counter()
    sel["zo_rivals"] = zo_rivals.tune(family, [_resolve(o, sel) for o in bb["oracles"]],
                                      _grid(prof), bb["budgets"], prof.tune_tasks, job.seed,
                                      rules=tuple(bb["rules"]), widen=prof.widen or 0)
    sel["zo_tuning_s"] = time.perf_counter() - t0
    return sel


def learned_config(prof: UAPRivalsProfile, sel: dict) -> MethodConfig:
    """ZO-LFT (``black_box.method``: ``lft``, or a residual rule ``lft+sgd|signsgd|adam``
    starting as its base rival on the same oracle, at the step size tuned for the largest
    budget) on the profile's oracle, its meta-loss weighted over the steps as ``weighting``
    says (default uniformly)."""
    bb = prof.black_box
    name, oracle = bb.get("method", "lft"), _resolve(bb["oracle"], sel)
    if name == "lft":
        cfg = preset("lft", zo=True, horizon=prof.steps, truncation=prof.truncation)
    else:
        best = sel["zo_rivals"][f"{name.split('+')[1]}/{estimator_name(oracle)}"]["best"]
        k = max(bb["budgets"])
        base_lr = float(best[k] if k in best else best[str(k)])
        cfg = preset(name, zo=True, base_lr=base_lr, horizon=prof.steps,
                     truncation=prof.truncation)
        if name == "lft+signsgd":  # a step per pixel: bound the correction alike
            cfg.rule = with_lstm_options(cfg.rule, {"output_scale": base_lr})
    cfg.oracle = oracle
    if "weighting" in bb:
        cfg.weighting = bb["weighting"]
    cfg.validate()
    return cfg


def run_learned(job: UAPRivalsJob, resume: bool = False) -> dict:
    """ZO-LFT meta-trained under the budget (one meta-seed), tested on the shared test tasks
    (``resume``: continue the checkpoint a killed run left)."""
    from lft.experiments.runner import meta_train
    from lft.meta.trainer import TrainConfig

    prof, sel, bb = job.profile, job.selection, job.profile.black_box
    t0 = time.perf_counter()
    family = build_family(ur.uap_config(job.source, prof, job.data_dir, sel["eps"]))
    cfg = learned_config(prof, sel)
    train = {"iterations": bb["iterations"], "meta_batch": bb["meta_batch"],
             "meta_lr": bb["meta_lr"], "clip": 1.0, "lr_decay": prof.lr_decay,
             "seed": ur.meta_seed_of(job.seed, job.meta_seed), "log_every": 10}
    method = Method(cfg, family, seed=train["seed"])
    key = f"{job.source}-zo-{cfg.name.replace('+', '-plus-')}-seed{job.meta_seed}"
    trainer, ckpt = meta_train(method, family, TrainConfig(**train), job.out, key, resume)
    curves = ur.run_fine_tuner(method, ur.test_batches(family, prof, job.seed),
                               prof.steps, ur.record_steps(prof), job.seed)
    return {"curves": curves, "method_config": cfg.to_dict(), "train": train,
            "train_stats": dict(trainer.stats.__dict__), "checkpoint": str(ckpt),
            "job_wall_time_s": time.perf_counter() - t0}


def run_rivals(job: UAPRivalsJob) -> dict:
    """Every ZO rival at every step size it was tuned to, on the shared test tasks."""
    prof, sel = job.profile, job.selection
    t0 = time.perf_counter()
    family = build_family(ur.uap_config(job.source, prof, job.data_dir, sel["eps"]))
    batches = ur.test_batches(family, prof, job.seed)
    out = {}
    for key, t in sel["zo_rivals"].items():
        if job.estimator not in (None, estimator_name(t["oracle"])):
            continue  # another job's share of the rivals
        for lr in sorted(set(t["best"].values())):
            cfg = zo_rivals.config(t["rule"], t["oracle"], lr, prof.steps)
            method = Method(MethodConfig.from_dict(cfg), family, job.seed)
            out[f"{key}@{lr}"] = ur.run_fine_tuner(method, batches, prof.steps,
                                                   ur.record_steps(prof), job.seed)
    return {"rivals": out, "job_wall_time_s": time.perf_counter() - t0}


KINDS = {"select": run_select, "learned": run_learned, "rivals": run_rivals}


def run_job(job: UAPRivalsJob, resume: bool = False) -> dict:
    """Run one black-box job of any kind (a worker process can take it); ``resume``: a
    meta-training job continues the checkpoint a killed run left."""
    kind = KINDS[job.kind]
    return kind(job, resume) if kind is run_learned else kind(job)


def make_rows(jobs: list[UAPRivalsJob], records: list[dict], sel: dict) -> list[dict]:
    """Schema rows: ZO-LFT per meta-seed, the rivals at their budgets, and the paired rows."""
    curves = {}  # source -> {(rival, lr): its ASR curve}, from the source's rival jobs
    for job, rec in zip(jobs, records):
        if job.kind == "rivals":
            curves.setdefault(job.source, {}).update({
                (k.rsplit("@", 1)[0], float(k.rsplit("@", 1)[1])):
                Curve("asr", c["asr"], c["steps"]) for k, c in rec["rivals"].items()})
    at_k = {source: zo_rivals.curves_at_budgets(sel[source]["zo_rivals"], c)
            for source, c in curves.items()}  # {(rival, k): per-task ASR at the rate for k}
    rows = []
    for source, values in at_k.items():
        extra = {"eps": sel[source]["eps"], "norm": sel[source]["norm"]}
        rows += [{**r, **extra} for r in zo_rivals.rows(sel[source]["zo_rivals"], values, "asr",
                                                         source, 10)]
    for job, rec in zip(jobs, records):
        if job.kind != "learned":
            continue
        source = job.source
        c, oracle = rec["curves"], rec["method_config"]["oracle"]
        per_step = queries_per_step(oracle, 10)
        asr = Curve("asr", c["asr"], c["steps"])
        mean, ci = asr.mean(), asr.ci95()
        tags = {"estimator": estimator_name(oracle), "meta_seed": job.meta_seed,
                "eps": sel[source]["eps"], "norm": sel[source]["norm"]}
        for i, k in enumerate(c["steps"]):
            rows.append({"method": rec["method_config"]["name"], "oracle": "zo",
                         "train_source": source,
                         "test_source": source, "metric": "asr", "step": k,
                         "mean": float(mean[i]), "ci95": float(ci[i]), "n": asr.n,
                         "queries": k * per_step, "images": k * per_step * c["images_per_step"],
                         "note": "", **tags})
        rows += zo_rivals.versus_rows(rec["method_config"]["name"], asr,
                                      sel[source]["zo_rivals"], at_k[source], "asr", source,
                                      source, per_step, tags)
    return rows


def write_table(path: Path, rows: list[dict], tuning: dict, profile: str, wall: float) -> str:
    """``uap-rivals.md`` of a black-box profile: ASR at each budget and the paired rows."""
    lines = [f"# Few-shot UAPs from the victim's outputs only (uap-rivals, profile `{profile}`)",
             "", "Held-out-image ASR (%), mean ± 95% CI, after k steps of "
             f"{next(r['queries'] // r['step'] for r in rows if r['step'])} loss evaluations "
             "each (directions plus the base point, forward differences on the task's 10 "
             "fine-tuning images). Rivals: step size tuned for each k on meta-training tasks "
             "(in brackets). Paired rows: ZO-LFT minus the rival, same tasks and starts; "
             "win/loss where the CI excludes 0.", ""]
    for source in ur.SOURCES:
        mine = [r for r in rows if r["test_source"] == source]
        if not mine:
            continue
        budgets = sorted({r["step"] for r in mine if r.get("versus")})
        eps = mine[0]["eps"]
        evals = {r["step"]: r["queries"] for r in mine}  # every method's budget is the same
        lines += [f"## {source} (||delta||_{mine[0]['norm']} <= {eps:g})", "",
                  "| method | " + " | ".join(f"k = {k} ({evals[k]} evals)" for k in budgets)
                  + " |", "|---|" + "---|" * len(budgets)]
        for seed in sorted({r["meta_seed"] for r in mine if "meta_seed" in r}):
            cells = [next(r for r in mine if r["method"].startswith("lft")
                          and not r.get("versus") and r["meta_seed"] == seed
                          and r["step"] == k) for k in budgets]
            lines.append(f"| ZO-{cells[0]['method'].upper()} [{cells[0]['estimator']}] seed "
                         f"{seed} | " + " | ".join(
                f"{100 * r['mean']:.1f} ± {100 * r['ci95']:.1f}" for r in cells) + " |")
        for r0 in [r for r in mine if not r["method"].startswith("lft")
                   and r["step"] == budgets[0]]:
            cells = [next(r for r in mine if r["method"] == r0["method"] and r["step"] == k
                          and r.get("estimator") == r0["estimator"]) for k in budgets]
            key = f"{r0['method']}/{r0['estimator']}"
            lines.append(f"| {zo_rivals.LABELS[r0['method']]} [{r0['estimator']}] | "
                         + " | ".join(f"{100 * r['mean']:.1f} ± {100 * r['ci95']:.1f} "
                                      f"[{tuning[source][key]['best'][r['step']]:g}]"
                                      for r in cells) + " |")
        lines += ["", "| ZO-LFT minus | " + " | ".join(f"k = {k}" for k in budgets) + " |",
                  "|---|" + "---|" * len(budgets)]
        vs = [r for r in mine if r.get("versus")]
        for key in sorted({(r["meta_seed"], r["versus"], r["versus_estimator"]) for r in vs}):
            cells = [next(r for r in vs if (r["meta_seed"], r["versus"], r["versus_estimator"])
                          == key and r["step"] == k) for k in budgets]
            rule = zo_rivals.LABELS[key[1].split("/")[0]]
            lines.append(f"| {rule} [{key[2]}], seed {key[0]} | " + " | ".join(
                f"{100 * r['mean']:+.1f} ± {100 * r['ci95']:.1f} "
                + ("win" if r["mean"] - r["ci95"] > 0 else "loss" if r["mean"] + r["ci95"] < 0
                   else "tie") for r in cells) + " |")
        lines.append("")
    lines += [f"Wall time: {wall / 60:.1f} min on {machine()}.", ""]
    text = "\n".join(lines)
    path.write_text(text)
    return text


def reproduce(profile: str, prof: UAPRivalsProfile, out: Path, seed: int, workers: int,
              progress: bool, data_dir: str | None, resume: bool = False) -> dict:
    """Run a black-box profile (called by :func:`lft.experiments.uap_rivals.reproduce`; the
    profile checked its budgets against its steps)."""
    started, t0 = utc_now(), time.perf_counter()
    common = {"profile": prof, "seed": seed, "data_dir": data_dir, "out": str(out)}
    store = JobStore(out / "jobs", resume)
    selections = ur.run_all([UAPRivalsJob(**common, kind="select", source=s)
                             for s in ur.SOURCES],
                            workers, progress, "choose eps and tune", run_job, store)
    sel = {s["source"]: s for s in selections}
    estimators = sorted({estimator_name(_resolve(o, sel[ur.SOURCES[0]]))
                         for o in prof.black_box["oracles"]})
    jobs = [UAPRivalsJob(**common, kind="rivals", source=s, selection=sel[s], estimator=e)
            for s in ur.SOURCES for e in estimators]  # the longest jobs first
    jobs += [UAPRivalsJob(**common, kind="learned", source=s, meta_seed=k, selection=sel[s])
             for s in ur.SOURCES for k in range(prof.meta_seeds)]
    records = ur.run_all(jobs, workers, progress, "meta-train and test", run_job, store)
    wall = time.perf_counter() - t0
    rows = make_rows(jobs, records, sel)
    config = {"profile": prof.to_dict(), "workers": workers, "data_dir": data_dir,
              "eps": {s: sel[s]["eps"] for s in ur.SOURCES}, "norm": prof.norm,
              "recorded_steps": ur.record_steps(prof),
              "zo_rivals": {s: sel[s]["zo_rivals"] for s in ur.SOURCES},
              "subspace": {s: sel[s]["subspace"] for s in ur.SOURCES if "subspace" in sel[s]},
              "outcomes": [{"kind": j.kind, "source": j.source,
                            **({} if j.meta_seed is None else {"meta_seed": j.meta_seed}),
                            **{k: v for k, v in r.items() if k not in ("curves", "rivals")}}
                           for j, r in zip(jobs, records)]}
    doc = results_document(ur.ARTEFACT, profile, seed, started, wall, config, rows)
    write_json(out / "results.json", doc)
    write_table(out / "uap-rivals.md", rows, {s: sel[s]["zo_rivals"] for s in ur.SOURCES},
                profile, wall)
    return doc
