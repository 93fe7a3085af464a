"""Table 2 at every budget: a residual learned rule against Adam tuned for each budget.

``lft reproduce budgets --profile quick|paper|paper-mid`` asks whether a learned rule beats the
strongest hand-designed rival *at the same number of steps*, on Table 2's 2-way 5-shot tasks
(MNIST-MLP and CIFAR-10 Conv-4):

1. **Rival.** Adam's learning rate is tuned separately for every reported budget ``k`` on
   meta-training tasks (validation loss at step ``k``, a grid spaced by x2,
   :func:`lft.meta.evaluate.tune_per_budget`): the best step size after 1 step is not the
   best after 20. Each row of Adam at step ``k`` is Adam at the rate tuned for ``k``.
2. **Learned rule.** ``lft+adam`` (:func:`lft.meta.learners.residual_rule`): Adam at the
   rate tuned for the whole horizon (the AUC of the validation loss, as Table 2 tunes it),
   times a learned per-step, per-layer-kind multiplier, plus a coordinate-LSTM correction
   whose head starts at zero. It starts as exactly tuned Adam and is meta-trained with the
   LFT objective on MNIST, CIFAR-10 and the MNIST+CIFAR-10 mix, once per meta-seed.
   A profile may name several starts of the learned schedule per training source
   (``schedule_variants``): one rule per variant is meta-trained, and each budget ``k``
   reports the variant with the highest accuracy at step ``k`` on meta-training tasks
   (:func:`choose_variants`), as Adam's rate is chosen per budget.
3. **Paired comparison.** Every learned rule and every rival run on the same held-out test
   tasks and random starts; ``versus`` rows hold the per-task difference (accuracy and test
   loss) against the rival tuned for that step, for each meta-seed.

It writes ``results.json`` (``../shared/results-schema.md``), ``budgets.md``, ``budgets.png``,
per-task curves, checkpoints and logs.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from safetensors.torch import save_file

from lft.data.sources import SOURCES
from lft.experiments.budgets_spec import (
    ARTEFACT,
    METRICS,
    PROFILES,
    TITLES,
    TRAIN,
    BudgetsProfile,
)
from lft.experiments.jobs import MethodJob
from lft.experiments.jobstore import JobStore
from lft.experiments.results import (
    curve_rows,
    machine,
    meta_training_summary,
    results_document,
    start_run,
    utc_now,
    write_json,
)
from lft.experiments.runner import makespan_s, run_jobs
from lft.meta.evaluate import Curve, tune_per_budget
from lft.meta.learners import find_base_lr, preset, with_lstm_options
from lft.perf import configure_allocator
from lft.tasks import build_family
from lft.tasks.presets import IMAGE_RULE, family_config

#: single-thread seconds per meta-training task (meta-batch 4, 20 steps) and per 500 test
#: tasks of 20 steps, measured on this 2-core machine; used only to deal long jobs first
TRAIN_S_PER_TASK = 1.2
TEST_S = {"mnist": 40.0, "cifar10": 250.0}


def _tune(args: tuple) -> tuple[str, dict, dict]:
    source, prof, seed, data_dir = args
    configure_allocator()
    torch.set_num_threads(1)
    family = build_family(family_config(source, data_dir))
    best, scores = tune_per_budget(preset("adam", horizon=prof.budgets[-1]), family,
                                   prof.grid, prof.budgets, n_tasks=prof.tune_tasks,
                                   seed=seed, chunk=prof.eval_chunk)
    return source, best, scores


def tune_rivals(prof: BudgetsProfile, seed: int, data_dir: str | None, workers: int) -> dict:
    """Per-budget Adam tuning on each source's meta-training tasks (one process per source)."""
    args = [(s, prof, seed, data_dir) for s in SOURCES]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(args))) as pool:
            done = list(pool.map(_tune, args))
    else:
        done = [_tune(a) for a in args]
    return {source: {"best": best, **scores} for source, best, scores in done}


def base_rate(tuning: dict, train: str, budget: int | None = None) -> float:
    """The residual rule's base learning rate on its training source: the whole-horizon (AUC)
    choice, or with ``budget`` the choice for that step (for the mix, the lowest mean of the
    two sources' scores: the mix draws them equally)."""
    parts = train.split("+")
    scores = [tuning[p]["auc"] if budget is None else tuning[p]["loss_at_k"][budget]
              for p in parts]
    pooled = {lr: sum(sc[lr] for sc in scores) / len(scores) for lr in scores[0]}
    return min(pooled, key=pooled.get)


def variants(prof: BudgetsProfile, train: str) -> dict[str | None, list | None]:
    """``{variant name: schedule start}`` of the rules meta-trained on ``train``: the
    profile's ``schedule_variants``, else one unnamed rule (``None``) from its
    ``schedule_init`` (``None``: the flat start)."""
    if prof.schedule_variants and train in prof.schedule_variants:
        return dict(prof.schedule_variants[train])
    return {None: (prof.schedule_init or {}).get(train)}


def make_jobs(prof: BudgetsProfile, tuning: dict, out: Path, seed: int, data_dir: str | None
              ) -> list[MethodJob]:
    """The learned rules (one per training source, schedule variant and meta-seed) and every
    Adam rival."""
    steps = prof.budgets[-1]
    record = sorted({0, *prof.budgets})
    tests = {s: family_config(s, data_dir) for s in SOURCES}
    common = {"out": str(out), "steps": steps, "test_tasks": prof.test_tasks, "seed": seed,
              "test_seed": seed, "eval_chunk": prof.eval_chunk, "record": record}
    jobs = []
    for train in prof.train or list(TRAIN):
        test_sources = TRAIN[train]
        lr = base_rate(tuning, train, prof.base_budget)
        named = variants(prof, train)
        for variant, meta_seed in [(v, s) for v in named for s in range(prof.meta_seeds)]:
            cfg = preset("lft+adam", base_lr=lr, horizon=steps)
            cfg.rule = with_lstm_options(cfg.rule, IMAGE_RULE)
            if named[variant] is not None:
                cfg.rule["rules"][0]["init"] = named[variant]
                cfg.validate()
            more = {} if variant is None else {
                "variant": variant, "select_tasks": prof.select_tasks or prof.tune_tasks}
            train_cfg = {"iterations": prof.iterations, "meta_batch": prof.meta_batch,
                         "meta_lr": prof.meta_lr, "clip": 1.0, "seed": meta_seed,
                         "log_every": 10, "lr_decay": prof.lr_decay}
            jobs.append(MethodJob(
                **common, **more,
                label=f"{cfg.label} [{train}]{'' if variant is None else ' ' + variant} "
                      f"seed {meta_seed}",
                family=family_config(train, data_dir), method=cfg.to_dict(), train=train_cfg,
                tests={s: tests[s] for s in test_sources}, train_source=train,
                meta_seed=meta_seed,
                estimate_s=prof.iterations * prof.meta_batch * TRAIN_S_PER_TASK
                + sum(TEST_S[s] for s in test_sources) * prof.test_tasks / 500 * steps / 20))
    for source in SOURCES:
        for lr in sorted(set(tuning[source]["best"].values())):
            cfg = preset("adam", base_lr=lr, horizon=steps)
            jobs.append(MethodJob(
                **common, label=f"Adam lr {lr:g} ({source})", family=tests[source],
                method=cfg.to_dict(), tests={source: tests[source]}, train_source="none", lr=lr,
                estimate_s=0.4 * TEST_S[source] * prof.test_tasks / 500 * steps / 20))
    return jobs


def collect(jobs: list[MethodJob], results: list[dict], tuning: dict, record: list[int]
            ) -> tuple[dict, dict, dict]:
    """``learned[(train, test, variant, meta_seed)]`` and ``rival[(test, k)]`` as ``{metric:
    Curve}`` on the test tasks (the rival at budget ``k`` is Adam at the learning rate tuned
    for ``k``), and ``select``, keyed as ``learned``, on meta-training tasks (the learned
    variants' only)."""
    learned, adam, select = {}, {}, {}
    for job, res in zip(jobs, results):
        key = (job.train_source, None, job.variant, job.meta_seed)
        for test, curves in res["tests"].items():
            cs = {m: Curve(m, torch.tensor(curves[m]), record) for m in METRICS}
            if job.train_source == "none":
                adam[(test, job.lr)] = cs
            else:
                learned[key[:1] + (test,) + key[2:]] = cs
        for test, curves in res.get("select", {}).items():
            select[key[:1] + (test,) + key[2:]] = {
                m: Curve(m, torch.tensor(curves[m]), record) for m in METRICS}
    rival = {(test, k): adam[(test, tuning[test]["best"][k])]
             for test in SOURCES for k in tuning[test]["best"]}
    return learned, rival, select


def choose_variants(select: dict, budgets: list[int]) -> dict:
    """``{(train, test): {"chosen": {k: variant}, "accuracy": {variant: {k: mean}}}}``: for
    each budget ``k``, the schedule variant whose mean accuracy at step ``k`` on meta-training
    tasks, averaged over its meta-seeds, is highest (no test task is read)."""
    groups: dict = {}
    for (train, test, variant, _), cs in select.items():
        groups.setdefault((train, test), {}).setdefault(variant, []).append(cs["accuracy"])
    out = {}
    for group, named in groups.items():
        acc = {v: {k: sum(float(column(c, k).mean()) for c in curves) / len(curves)
                   for k in budgets} for v, curves in named.items()}
        out[group] = {"chosen": {k: max(acc, key=lambda v, k=k: acc[v][k]) for k in budgets},
                      "accuracy": acc}
    return out


def column(curve: Curve, k: int) -> torch.Tensor:
    """Per-task values of ``curve`` at fine-tuning step ``k``."""
    return curve.values[:, curve.steps.index(k)]


def summarise(values: torch.Tensor) -> tuple[float, float]:
    """Mean and 95% CI half-width of per-task values."""
    c = Curve("x", values[:, None])
    return float(c.mean()[0]), float(c.ci95()[0])


def _sorted(learned: dict) -> list:
    """``learned``'s items in a stable order (the variant may be ``None``)."""
    return sorted(learned.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or "",
                                                   kv[0][3]))


def _variant(variant: str | None) -> dict:
    return {} if variant is None else {"variant": variant}


def make_rows(learned: dict, rival: dict, tuning: dict, budgets: list[int],
              choice: dict | None = None) -> list[dict]:
    """Schema rows: the learned rules' curves (with ``meta_seed``, and ``variant`` where a
    source has several), Adam at each budget with the rate tuned for it, and the paired
    ``versus`` rows at each budget; a variant's paired row carries ``selected``: whether it
    is the one ``choice`` (:func:`choose_variants`) reports at that budget."""
    rows, choice = [], choice or {}
    for (train, test, variant, meta_seed), cs in _sorted(learned):
        for m in METRICS:
            for row in curve_rows(cs[m], "lft+adam", "fo", train, test):
                rows.append({**row, "meta_seed": meta_seed, **_variant(variant),
                             "queries": 10 * row["step"]})  # 2 ways x 5 shots per step
    for (test, k), cs in sorted(rival.items()):
        lr = tuning[test]["best"][k]
        for m in METRICS:
            mean, ci = summarise(column(cs[m], k))
            rows.append({"method": "adam", "oracle": "fo", "train_source": "none",
                         "test_source": test, "metric": m, "step": k, "mean": mean, "ci95": ci,
                         "n": cs[m].n, "queries": 10 * k,
                         "note": f"lr={lr:g}, tuned for step {k} on meta-training tasks"})
    for (train, test, variant, meta_seed), cs in _sorted(learned):
        for k in budgets:
            for m in METRICS:
                mean, ci = summarise(column(cs[m], k) - column(rival[(test, k)][m], k))
                picked = {} if variant is None else {
                    "selected": choice[(train, test)]["chosen"][k] == variant}
                rows.append({"method": "lft+adam", "oracle": "fo", "train_source": train,
                             "test_source": test, "metric": m, "step": k, "mean": mean,
                             "ci95": ci, "n": cs[m].n, "versus": "adam",
                             "meta_seed": meta_seed, **_variant(variant), **picked,
                             "queries": 10 * k,
                             "note": f"Adam at lr={tuning[test]['best'][k]:g}, tuned for step "
                                     f"{k}; same test tasks and random starts"
                                     + ("" if variant is None else
                                        "; selected: the variant chosen for this step on "
                                        "meta-training tasks" if picked["selected"] else
                                        "; not the variant chosen for this step")})
    return rows


def verdict(mean: float, ci: float) -> str:
    """``win``/``loss`` when the paired 95% CI excludes 0, else ``tie``."""
    return "win" if mean - ci > 0 else ("loss" if mean + ci < 0 else "tie")


def _name(train: str, variant: str | None, seed: int) -> str:
    return f"lft+adam [{train}]{'' if variant is None else ' ' + variant} seed {seed}"


def _cell(acc: dict, loss: dict) -> str:
    return (f"{100 * acc['mean']:+.1f} ± {100 * acc['ci95']:.1f} "
            f"{verdict(acc['mean'], acc['ci95'])} "
            f"[{loss['mean']:+.3f} ± {loss['ci95']:.3f}]")


def write_table(path: Path, rows: list[dict], tuning: dict, outcomes: list[dict],
                profile: str, wall: float, where: str | None = None,
                choice: dict | None = None) -> str:
    """``budgets.md``: accuracy at each budget, the paired differences per meta-seed, and,
    where a source has schedule variants, the variant chosen for each budget (``choice``,
    :func:`choose_variants`) and its paired differences."""
    budgets = sorted({r["step"] for r in rows if r.get("versus")})
    lines = [f"# Table 2 at every budget: lft+adam against per-budget-tuned Adam (profile "
             f"`{profile}`)", "",
             "Test accuracy (%) on held-out 2-way 5-shot tasks after k fine-tuning steps, "
             "mean ± 95% CI. Adam's column k is Adam at the learning rate tuned for step k on "
             "meta-training tasks (in brackets). lft+adam rows: one per meta-training source "
             "and meta-seed.", ""]
    for test in SOURCES:
        lines += [f"## Test: {TITLES[test]}", "",
                  "| method | " + " | ".join(f"k = {k}" for k in budgets) + " |",
                  "|---|" + "---|" * len(budgets)]
        adam = {r["step"]: r for r in rows if r["method"] == "adam" and r["test_source"] == test
                and r["metric"] == "accuracy"}
        lines.append("| Adam, tuned per k | " + " | ".join(
            f"{100 * adam[k]['mean']:.1f} ± {100 * adam[k]['ci95']:.1f} "
            f"[{tuning[test]['best'][k]:g}]" for k in budgets) + " |")
        plain = {(r["train_source"], r.get("variant"), r["meta_seed"], r["step"]): r
                 for r in rows if r["method"] == "lft+adam" and not r.get("versus")
                 and r["test_source"] == test and r["metric"] == "accuracy"}
        names = sorted({key[:3] for key in plain}, key=lambda x: (x[0], x[1] or "", x[2]))
        for train, variant, seed in names:
            lines.append(f"| {_name(train, variant, seed)} | " + " | ".join(
                f"{100 * plain[(train, variant, seed, k)]['mean']:.1f} ± "
                f"{100 * plain[(train, variant, seed, k)]['ci95']:.1f}" for k in budgets)
                + " |")
        lines += ["", "Paired difference lft+adam − Adam tuned for k (points of accuracy; test "
                  "loss in brackets, negative is better); win/loss where the 95% CI excludes 0:",
                  "", "| learned rule | " + " | ".join(f"k = {k}" for k in budgets) + " |",
                  "|---|" + "---|" * len(budgets)]
        vs = {(r["train_source"], r.get("variant"), r["meta_seed"], r["step"], r["metric"]): r
              for r in rows if r.get("versus") and r["test_source"] == test}
        for train, variant, seed in names:
            lines.append(f"| {_name(train, variant, seed)} | " + " | ".join(
                _cell(vs[(train, variant, seed, k, "accuracy")],
                      vs[(train, variant, seed, k, "loss")]) for k in budgets) + " |")
        lines.append("")
        for (train, t), picked in sorted((choice or {}).items()):
            if t != test:
                continue
            lines += [f"Chosen per budget on {train} meta-training tasks (mean accuracy at "
                      "step k over the meta-seeds, %): " + "; ".join(
                          f"k = {k}: **{picked['chosen'][k]}** (" + ", ".join(
                              f"{v} {100 * acc[k]:.1f}"
                              for v, acc in sorted(picked["accuracy"].items())) + ")"
                          for k in budgets) + ".", "",
                      f"| lft+adam [{train}], the variant chosen for k | "
                      + " | ".join(f"k = {k}" for k in budgets) + " |",
                      "|---|" + "---|" * len(budgets)]
            for seed in sorted({s for tr, _, s in names if tr == train}):
                lines.append(f"| seed {seed} | " + " | ".join(
                    _cell(vs[(train, picked['chosen'][k], seed, k, "accuracy")],
                          vs[(train, picked['chosen'][k], seed, k, "loss")])
                    for k in budgets) + " |")
            lines.append("")
    lines += ["Adam's learning rate for each k was chosen on meta-training tasks (validation "
              "loss at step k) from the grid "
              f"{', '.join(f'{lr:g}' for lr in sorted(tuning[SOURCES[0]]['auc']))}. The "
              "residual rules' base rates (Adam's whole-horizon choice, AUC of the validation "
              "loss, unless the profile's base_budget names a step; the mix: the lowest mean "
              "of the two sources' scores): "
              + ", ".join(f"{train} {lr:g}" for train, lr in base_rates(outcomes).items())
              + ".", "",
              meta_training_summary(outcomes), "",
              f"Wall time: {wall / 60:.1f} min on {where or machine()}.", ""]
    text = "\n".join(lines)
    path.write_text(text)
    return text


def base_rates(outcomes: list[dict]) -> dict[str, float]:
    """``{training source: base learning rate}`` of the learned rules in ``outcomes``."""
    return {r["label"].split("[")[1].split("]")[0]: find_base_lr(r["method_config"]["rule"])
            for r in outcomes if "train_stats" in r}


def plot(path: Path, learned: dict, rival: dict, tuning: dict) -> None:
    """Accuracy against steps: each learned rule (thin, per meta-seed) and the per-budget
    Adam envelope (each point its own tuned rate)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SOURCES), figsize=(5.5 * len(SOURCES), 4.2))
    colours = {t: f"C{i}" for i, t in enumerate(TRAIN)}
    for ax, test in zip(axes, SOURCES):
        ks = sorted(tuning[test]["best"])
        means = [100 * float(column(rival[(test, k)]["accuracy"], k).mean()) for k in ks]
        ax.plot(ks, means, "k--o", lw=1.5, label="Adam, tuned per step")
        seen, styles = set(), {}
        for (train, t, variant, seed), cs in _sorted(learned):
            if t != test:
                continue
            c = cs["accuracy"]
            style = styles.setdefault(variant, ["-", ":", "-.", "--"][len(styles) % 4])
            name = f"lft+adam [{train}]" + ("" if variant is None else f" {variant}")
            ax.plot(c.steps, 100 * c.mean().numpy(), style, color=colours[train], lw=1.2,
                    label=None if name in seen else name)
            seen.add(name)
        ax.set_title(f"test: {TITLES[test]}")
        ax.set_xlabel("fine-tuning steps")
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("test accuracy (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def reproduce(profile: str = "quick", out: str | Path | None = None, seed: int = 0,
              workers: int | None = None, progress: bool = True, data_dir: str | None = None,
              profile_overrides: dict | None = None,
              resume: bool = False) -> dict:
    """Run the whole artefact; returns the ``results.json`` document. With ``resume``, jobs
    that a killed run in ``out`` finished are read back, not run again (``OUT/jobs``)."""
    prof, out = start_run(PROFILES, ARTEFACT, profile, SOURCES, data_dir, out,
                          profile_overrides)
    started, t0 = utc_now(), time.perf_counter()
    workers = workers or min(prof.workers, os.cpu_count() or 1)
    if progress:
        print(f"tuning Adam per budget on meta-training tasks ({len(prof.grid)} rates, "
              f"{prof.tune_tasks} tasks per source)", flush=True)
    tuning = tune_rivals(prof, seed, data_dir, workers)
    jobs = make_jobs(prof, tuning, out, seed, data_dir)
    if progress:
        est = makespan_s([j.estimate_s for j in jobs], workers) / 60
        print(f"{len(jobs)} jobs, estimated {est:.0f} min on {workers} workers", flush=True)
    results = run_jobs(jobs, workers=workers, progress=progress,
                       store=JobStore(out / "jobs", resume))
    record = sorted({0, *prof.budgets})
    learned, rival, select = collect(jobs, results, tuning, record)
    choice = choose_variants(select, prof.budgets)
    rows = make_rows(learned, rival, tuning, prof.budgets, choice)
    wall = time.perf_counter() - t0
    outcomes = [{k: v for k, v in r.items() if k not in ("curves", "tests", "select")}
                for r in results]
    config = {"profile": prof.to_dict(), "workers": workers, "data_dir": data_dir,
              "tuning": {s: {"best": {str(k): lr for k, lr in t["best"].items()},
                             "best_auc": t["best_auc"],
                             "auc": {str(lr): v for lr, v in t["auc"].items()},
                             "loss_at_k": {str(k): {str(lr): v for lr, v in sc.items()}
                                           for k, sc in t["loss_at_k"].items()}}
                         for s, t in tuning.items()},
              "variant_choice": [{"train_source": train, "test_source": test,
                                  "chosen": {str(k): v for k, v in c["chosen"].items()},
                                  "select_accuracy": {v: {str(k): a for k, a in acc.items()}
                                                      for v, acc in c["accuracy"].items()}}
                                 for (train, test), c in sorted(choice.items())],
              "jobs": [{k: v for k, v in j.to_dict().items() if k != "out"} for j in jobs],
              "outcomes": outcomes}
    doc = results_document(ARTEFACT, profile, seed, started, wall, config, rows)
    write_json(out / "results.json", doc)
    tensors = {f"{tr}/lft+adam/{te}/{'' if v is None else v + '/'}seed{s}/{m}":
               c.values.contiguous() for (tr, te, v, s), cs in learned.items()
               for m, c in cs.items()}
    for (te, k), cs in rival.items():  # one entry per tuned rate (budgets may share one)
        tensors.update({f"none/adam/{te}/lr{tuning[te]['best'][k]:g}/{m}": c.values.contiguous()
                        for m, c in cs.items()})
    save_file(tensors, str(out / "curves.safetensors"),
              metadata={"layout": "[task, recorded step] test metric",
                        "steps": ",".join(map(str, record))})
    write_table(out / "budgets.md", rows, tuning, outcomes, profile, wall, choice=choice)
    plot(out / "budgets.png", learned, rival, tuning)
    return doc
