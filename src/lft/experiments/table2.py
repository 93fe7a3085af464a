"""Table 2 and Figure 3: incongruous few-shot classification (MNIST-MLP and CIFAR-10 Conv-4).

``lft reproduce table2 --profile quick|paper`` meta-trains FO-LFT and FO-L2O on (CIFAR-10, CNN)
tasks and on the incongruous mix (MNIST+CIFAR-10, MLP+CNN), MAML where the tasks are congruous
(CIFAR-10 only), tunes SGD and Adam from random initialisation on meta-training tasks of each
test source, and tests everything on held-out 2-way 5-shot tasks of MNIST, CIFAR-10 and the mix.
The mix column pools the MNIST and CIFAR-10 test tasks (equal numbers of each), i.e. a 50/50
mixture. It writes ``results.json``, ``table2.md`` (paper numbers beside ours), ``figure3.png``
(test accuracy against fine-tuning steps), per-task curves, checkpoints and logs.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from lft import validation
from lft.data.sources import SOURCES
from lft.experiments.jobs import MethodJob
from lft.experiments.jobstore import JobStore
from lft.experiments.profiles import Profile
from lft.experiments.results import (
    curve_rows,
    machine,
    meta_training_summary,
    results_document,
    start_run,
    utc_now,
    write_json,
)
from lft.experiments.runner import job_key, makespan_s, run_jobs
from lft.meta.evaluate import Curve
from lft.meta.learners import preset
from lft.tasks.presets import IMAGE_RULE, family_config

ARTEFACT = "table2"
#: SOURCES (lft.data.sources): the single-source test families; the mix pools them
TESTS = ("mnist", "cifar10", "mnist+cifar10")
TRAIN = ("cifar10", "mnist+cifar10")
TITLES = {"mnist": "MNIST, MLP", "cifar10": "CIFAR-10, CNN",
          "mnist+cifar10": "MNIST+CIFAR-10, MLP+CNN"}
NOT_APPLICABLE = ("not applicable: MAML and LFT+INIT meta-learn one initialisation, and "
                  "MNIST-MLP and CIFAR-10-CNN tasks do not share parameter shapes")
#: Methods that meta-learn an initialisation: run on CIFAR-10 only (congruous tasks).
INIT_LEARNERS = ("maml", "lft+init")

#: The paper's Table 2 (accuracy %, ± as printed), by (train, method) and test source.
PAPER: dict[tuple[str, str], dict[str, tuple[float, float]]] = {
    ("cifar10", "maml"): {"cifar10": (66, 0.8)},
    ("cifar10", "l2o"): {"mnist": (27, 2.1), "cifar10": (63, 1.4), "mnist+cifar10": (44, 1.4)},
    ("cifar10", "lft"): {"mnist": (35, 1.9), "cifar10": (66, 1.3), "mnist+cifar10": (47, 1.5)},
    ("mnist+cifar10", "l2o"): {"mnist": (81, 1.0), "cifar10": (53, 1.2),
                               "mnist+cifar10": (68, 1.1)},
    ("mnist+cifar10", "lft"): {"mnist": (83, 0.9), "cifar10": (57, 1.3),
                               "mnist+cifar10": (72, 1.2)},
}


#: the methods meta-trained (``iterations`` and ``meta_lr`` need one entry each), the tuned ones
LEARNED_METHODS = ("lft", "l2o", "maml", "lft+init")
TUNED_METHODS = ("sgd", "adam")


@dataclasses.dataclass(frozen=True)
class Table2Profile(Profile):
    """One profile of Table 2 (validated at construction; see :mod:`lft.experiments.profiles`).

    Attributes:
        iterations: meta-training iterations per learned method (``lft``, ``l2o``, ``maml``,
            ``lft+init``); ``meta_batch``: tasks per meta-iteration.
        steps: fine-tuning steps; ``test_tasks``: held-out test tasks per source.
        tune_tasks: meta-training tasks SGD's and Adam's learning rates are tuned on, from
            ``lr_grid`` (``{"sgd": [...], "adam": [...]}``).
        meta_lr: meta-learning rate per learned method; ``lr_decay``: its final fraction.
        maml_inner: MAML's inner loop, ``{"lr": step size, "steps": n}`` (``lft+init``'s SGD
            part starts at the same rate).
        eval_chunk: test tasks run at once (small chunks keep Conv-4 activations in cache).
        workers: worker processes (at most the machine's cores).
    """

    ARTEFACT = ARTEFACT

    iterations: dict
    meta_batch: int
    steps: int
    test_tasks: int
    tune_tasks: int
    lr_grid: dict
    meta_lr: dict
    lr_decay: float
    maml_inner: dict
    eval_chunk: int
    workers: int

    def __post_init__(self):
        self._int_values("iterations", LEARNED_METHODS)
        self._int("meta_batch", "steps", "test_tasks", "tune_tasks", "eval_chunk", "workers")
        self._grids("lr_grid", TUNED_METHODS)
        self._number_values("meta_lr", LEARNED_METHODS)
        self._number("lr_decay")
        inner = self._keys("maml_inner", ("lr", "steps"))
        validation.positive("maml_inner lr", inner["lr"], self._where)
        validation.integer("maml_inner steps", inner["steps"], 1, where=self._where)


#: Each profile: meta-training budget, test tasks per source, tuning budget, workers.
PROFILES: dict[str, Table2Profile] = {
    "quick": Table2Profile(
        iterations={"lft": 3, "l2o": 3, "maml": 3, "lft+init": 3}, meta_batch=2, steps=5,
        test_tasks=20, tune_tasks=10, lr_grid={"sgd": [0.01, 0.1], "adam": [0.001, 0.01]},
        meta_lr={"lft": 3e-3, "l2o": 3e-3, "maml": 1e-3, "lft+init": 3e-3},
        lr_decay=0.1, maml_inner={"lr": 0.1, "steps": 1}, eval_chunk=10, workers=2),
    "paper": Table2Profile(
        iterations={"lft": 250, "l2o": 250, "maml": 300, "lft+init": 250},
        meta_batch=4, steps=20, test_tasks=500, tune_tasks=60,
        lr_grid={"sgd": [0.01, 0.03, 0.1, 0.3, 1.0],
                 "adam": [0.0003, 0.001, 0.003, 0.01, 0.03]},
        meta_lr={"lft": 3e-3, "l2o": 3e-3, "maml": 1e-3, "lft+init": 3e-3},
        lr_decay=0.1, maml_inner={"lr": 0.1, "steps": 5}, eval_chunk=10, workers=2),
}


#: Seconds per task and meta-iteration (one thread), measured in the 53.4-min paper run of
#: 2026-11-25 (meta-batch 4); used only to deal the longest jobs first.
TRAIN_S_PER_TASK = {("lft", "cifar10"): 0.76, ("l2o", "cifar10"): 1.27,
                    ("lft", "mnist+cifar10"): 0.70, ("l2o", "mnist+cifar10"): 0.98,
                    ("maml", "cifar10"): 0.21, ("lft+init", "cifar10"): 0.76}
#: Seconds to test 500 tasks for 20 steps, and to tune one learning-rate grid on 60 tasks.
TEST_S = {"mnist": 40.0, "cifar10": 250.0}
TUNE_S = {"mnist": 10.0, "cifar10": 80.0}


def estimate_s(job: MethodJob) -> float:
    """Rough single-thread seconds of one job, so :func:`run_jobs` can start the longest first."""
    scale = job.steps / 20
    test = sum(TEST_S[s] for s in job.tests) * job.test_tasks / 500 * scale
    if job.tune is not None:
        tune, source = job.tune, next(iter(job.tests))
        return test + TUNE_S[source] * tune["tasks"] / 60 * len(tune["grid"]) / 5 * scale
    per_task = TRAIN_S_PER_TASK.get((job.method["name"], job.train_source), 1.0)
    return test + job.train["iterations"] * job.train["meta_batch"] * per_task


def _label(train: str, cfg_label: str) -> str:
    return f"{cfg_label} [{train}]"


def make_jobs(profile: Table2Profile, out: Path, seed: int, data_dir: str | None
              ) -> list[MethodJob]:
    """Every job of the artefact, for :func:`lft.experiments.runner.run_jobs`."""
    steps, jobs = profile.steps, []
    tests = {s: family_config(s, data_dir) for s in SOURCES}

    def job(label: str, family: dict, cfg, **extra) -> MethodJob:
        fields = {"label": label, "family": family, "method": cfg.to_dict(), "out": str(out),
                  "steps": steps, "test_tasks": profile.test_tasks, "seed": seed,
                  "test_seed": seed, "eval_chunk": profile.eval_chunk, **extra}
        return MethodJob(**fields, estimate_s=estimate_s(MethodJob(**fields)))

    def train_cfg(name: str) -> dict:
        return {"iterations": profile.iterations[name], "meta_batch": profile.meta_batch,
                "meta_lr": profile.meta_lr[name], "clip": 1.0, "seed": seed,
                "log_every": 10, "lr_decay": profile.lr_decay}

    for train in TRAIN:
        for name in ("lft", "l2o"):
            cfg = preset(name, horizon=steps)
            cfg.rule = {**cfg.rule, **IMAGE_RULE}
            jobs.append(job(_label(train, cfg.label), family_config(train, data_dir), cfg,
                            train=train_cfg(name), tests=tests, train_source=train))
    inner = profile.maml_inner
    maml = preset("maml", horizon=inner["steps"])
    maml.rule = {**maml.rule, "lr": inner["lr"]}
    jobs.append(job(_label("cifar10", maml.label), family_config("cifar10", data_dir), maml,
                    train=train_cfg("maml"), tests={"cifar10": tests["cifar10"]},
                    train_source="cifar10"))
    # beyond the paper: the learned rule with a learned initialisation, started from MAML's
    # (MAML's SGD step at its inner learning rate plus an LSTM correction that starts at zero)
    hybrid = preset("lft+init", horizon=steps)
    sgd, lstm = hybrid.rule["rules"]
    hybrid.rule = {**hybrid.rule, "rules": [{**sgd, "lr": inner["lr"]}, {**lstm, **IMAGE_RULE}]}
    jobs.append(job(_label("cifar10", hybrid.label), family_config("cifar10", data_dir), hybrid,
                    train=train_cfg("lft+init"), tests={"cifar10": tests["cifar10"]},
                    train_source="cifar10", after=_label("cifar10", maml.label),
                    init_from=str(out / "checkpoints" / f"{job_key(jobs[-1])}.safetensors")))
    for name in TUNED_METHODS:
        for source in SOURCES:
            cfg = preset(name, horizon=steps)
            jobs.append(job(f"{cfg.label} ({source})", tests[source], cfg,
                            tune={"grid": profile.lr_grid[name], "tasks": profile.tune_tasks},
                            tests={source: tests[source]}, train_source="none"))
    return jobs


def cells(records: list[dict]) -> dict[tuple[str, str, str], dict[str, torch.Tensor]]:
    """``(train, method, test) -> {metric: (tasks, steps + 1)}``, with the pooled mix column."""
    out: dict[tuple[str, str, str], dict[str, torch.Tensor]] = {}
    for r in records:
        for test, curves in r["tests"].items():
            out[(r["train_source"], r["name"], test)] = {k: torch.tensor(v)
                                                          for k, v in curves.items()}
    return pool_mix(out)


def pool_mix(table: dict) -> dict:
    """Add the mix column: every fine-tuner tested on each single source, those tasks pooled."""
    out = dict(table)
    for train, name in sorted({(tr, m) for tr, m, _ in table}):  # a fixed row order
        if all((train, name, s) in table for s in SOURCES):
            first = table[(train, name, SOURCES[0])]
            out[(train, name, "mnist+cifar10")] = {
                k: torch.cat([table[(train, name, s)][k] for s in SOURCES]) for k in first}
    return out


def _fmt(curve: torch.Tensor, k: int) -> str:
    c = Curve("accuracy", curve)
    return f"{100 * float(c.mean()[k]):.1f} ± {100 * float(c.ci95()[k]):.1f}"


def paired(a: torch.Tensor, b: torch.Tensor, k: int) -> tuple[float, float]:
    """Mean and 95% CI of the per-task accuracy difference ``a - b`` at step ``k`` (in %)."""
    d = Curve("diff", a - b)
    return 100 * float(d.mean()[k]), 100 * float(d.ci95()[k])


CLAIM_STEPS = (5, 10, 20)


def write_table(path: Path, table: dict, outcomes: list[dict], profile_name: str,
                wall: float, where: str | None = None) -> str:
    """``table2.md``: the paper's layout, ours beside the paper's, plus the claims checked.

    ``table`` is :func:`cells`' output; ``outcomes`` are the job records without curves (as
    stored in ``results.json``), for tuned learning rates and meta-training statistics.
    """
    steps = len(next(iter(table.values()))["accuracy"][0]) - 1
    n = {s: len(table[next(k for k in table if k[2] == s)]["accuracy"]) for s in TESTS}
    lines = [f"# Table 2 — incongruous few-shot classification (profile `{profile_name}`)", "",
             f"Test accuracy (%) after {steps} fine-tuning steps on 2-way 5-shot tasks of "
             "held-out images, mean ± 95% CI over "
             + ", ".join(f"{n[s]} {TITLES[s]}" for s in TESTS)
             + " test tasks (the mix pools the other two columns). Paper's value in brackets.",
             "", "| meta-train on | method | " + " | ".join(f"test ({TITLES[t]})" for t in TESTS)
             + " |", "|---|---|" + "---|" * len(TESTS)]
    for train in TRAIN:
        for name in ("maml", "l2o", "lft", "lft+init"):
            row = []
            for test in TESTS:
                paper = PAPER.get((train, name), {}).get(test)
                ref = (f" [{paper[0]:g} ± {paper[1]:g}]" if paper else
                       " [not in paper]" if name == "lft+init" else " [N/A]")
                ours = table.get((train, name, test))
                row.append((_fmt(ours["accuracy"], steps) if ours is not None else "N/A") + ref)
            lines.append(f"| ({TITLES[train]}) | {name.upper()} | " + " | ".join(row) + " |")
    for name in ("sgd", "adam"):
        row = [_fmt(table[("none", name, t)]["accuracy"], steps) for t in TESTS]
        lrs = ", ".join(f"{r['tuned_lr']:g} on {r['label'].split('(')[-1].rstrip(')')}"
                        for r in outcomes if r["name"] == name)
        lines.append(f"| none (random init, lr {lrs}) | {name.upper()} | " + " | ".join(row)
                     + " |")
    at = [k for k in CLAIM_STEPS if k <= steps] or [steps]
    lines += ["", f"N/A: {NOT_APPLICABLE}.", "",
              "LFT+INIT (beyond the paper): the same learned rule with a learned "
              "initialisation, meta-trained together for the same budget, the initialisation "
              "starting from MAML's.", "",
              "Claims checked at the same number of fine-tuning steps k (paired over the same "
              "test tasks and random starts; accuracy difference in points, mean ± 95% CI; "
              "k = " + ", ".join(map(str, at)) + "):", "",
              "| claim | " + " | ".join(TITLES[t] for t in TESTS) + " |",
              "|---|" + "---|" * len(TESTS)]
    claims = [(f"LFT − L2O [{train}]", (train, "lft"), (train, "l2o")) for train in TRAIN]
    claims += [(f"LFT [{train}] − {b.upper()}", (train, "lft"), ("none", b))
               for train in TRAIN for b in ("adam", "sgd")]
    claims += [(f"LFT+INIT [cifar10] − {b.upper()}", ("cifar10", "lft+init"), (train, b))
               for train, b in (("cifar10", "maml"), ("cifar10", "lft"), ("none", "adam"))]
    for title, a, b in claims:
        row = []
        for test in TESTS:
            if (*a, test) in table and (*b, test) in table:
                diffs = [paired(table[(*a, test)]["accuracy"], table[(*b, test)]["accuracy"], k)
                         for k in at]
                row.append(" / ".join(f"{m:+.1f} ± {ci:.1f}" for m, ci in diffs))
            else:
                row.append("N/A")
        lines.append(f"| {title} | " + " | ".join(row) + " |")
    lines += ["", meta_training_summary(outcomes), "",
              f"Wall time: {wall / 60:.1f} min on {where or machine()}.", ""]
    text = "\n".join(lines)
    path.write_text(text)
    return text


def plot(path: Path, table: dict) -> None:
    """Figure 3: test accuracy against fine-tuning steps, one panel per test source."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TESTS), figsize=(5 * len(TESTS), 4.2), sharey=True)
    styles = {"cifar10": "-", "mnist+cifar10": "--", "none": ":"}
    keys = sorted({(train, name) for train, name, _ in table})
    colours = {k: f"C{i}" for i, k in enumerate(keys)}  # one colour per fine-tuner, all panels
    for ax, test in zip(axes, TESTS):
        for (train, name) in keys:
            if (train, name, test) not in table:
                continue
            c = Curve("accuracy", table[(train, name, test)]["accuracy"])
            mean, ci = 100 * c.mean().numpy(), 100 * c.ci95().numpy()
            label = name.upper() + ("" if train == "none" else f" [{train}]")
            ax.plot(range(len(mean)), mean, styles[train], lw=1.8, label=label,
                    color=colours[(train, name)])
            ax.fill_between(range(len(mean)), mean - ci, mean + ci, alpha=0.15,
                            color=colours[(train, name)])
        ax.set_title(f"test: {TITLES[test]}")
        ax.set_xlabel("fine-tuning steps")
        ax.axhline(50, color="grey", lw=0.8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    handles, labels = axes[1].get_legend_handles_labels()  # the CIFAR-10 panel has every line
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.suptitle("2-way 5-shot classification: meta-trained on [CIFAR-10] or [MNIST+CIFAR-10]"
                 " (solid / dashed), hand-designed from random init (dotted)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)


def report(out: str | Path) -> str:
    """Re-render ``table2.md`` and ``figure3.png`` from a run's ``results.json`` and curves."""
    import json

    from safetensors.torch import load_file

    out = Path(out)
    doc = json.loads((out / "results.json").read_text())
    table: dict = {}
    for key, v in load_file(str(out / "curves.safetensors")).items():
        *cell, metric = key.split("/")
        train, name, test = cell[0], cell[1], "/".join(cell[2:])
        table.setdefault((train, name, test), {})[metric] = v
    table = pool_mix(table)
    text = write_table(out / "table2.md", table, doc["config"]["outcomes"], doc["profile"],
                       doc["wall_time_s"], doc["machine"])
    plot(out / "figure3.png", table)
    return text


def reproduce(profile: str = "quick", out: str | Path | None = None, seed: int = 0,
              workers: int | None = None, progress: bool = True, data_dir: str | None = None,
              profile_overrides: dict | None = None,
              resume: bool = False) -> dict:
    """Run the whole artefact; returns the ``results.json`` document. With ``resume``, jobs
    that a killed run in ``out`` finished are read back, not run again (``OUT/jobs``)."""
    prof, out = start_run(PROFILES, ARTEFACT, profile, SOURCES, data_dir, out,
                          profile_overrides)
    started, t0 = utc_now(), time.perf_counter()
    jobs = make_jobs(prof, out, seed, data_dir)
    workers = workers or min(prof.workers, os.cpu_count() or 1)
    if progress:
        est = makespan_s([j.estimate_s for j in jobs], workers) / 60
        print(f"{len(jobs)} jobs, estimated {est:.0f} min on {workers} workers", flush=True)
    results = run_jobs(jobs, workers=workers, progress=progress,  # longest first
                       store=JobStore(out / "jobs", resume))
    records = [{**r, "train_source": j.train_source} for j, r in zip(jobs, results)]
    wall = time.perf_counter() - t0
    table = cells(records)
    rows = []
    for (train, name, test), curves in table.items():
        rows += curve_rows(Curve("accuracy", curves["accuracy"]), name, "fo", train, test)
    for train in TRAIN:
        for test in TESTS:
            for name in INIT_LEARNERS:
                if (train, name, test) not in table:
                    rows.append({"method": name, "oracle": "fo", "train_source": train,
                                 "test_source": test, "metric": "accuracy",
                                 "step": prof.steps, "mean": None, "ci95": None, "n": 0,
                                 "note": NOT_APPLICABLE})
    config = {"profile": prof.to_dict(), "workers": workers, "data_dir": data_dir,
              "mix_column": "pooled MNIST and CIFAR-10 test tasks (equal numbers)",
              "jobs": [{k: v for k, v in j.to_dict().items() if k != "out"} for j in jobs],
              "outcomes": [{k: v for k, v in r.items() if k not in ("curves", "tests")}
                           for r in records], "paper": {f"{k[0]}/{k[1]}": v
                                                       for k, v in PAPER.items()}}
    doc = results_document(ARTEFACT, profile, seed, started, wall, config, rows)
    write_json(out / "results.json", doc)
    save_file({f"{tr}/{m}/{te}/{k}": v.contiguous() for (tr, m, te), cs in table.items()
               if te in SOURCES for k, v in cs.items()},  # the mix column is derived
              str(out / "curves.safetensors"),
              metadata={"layout": "[task, step] test metric; key train/method/test/metric"})
    report(out)
    return doc
