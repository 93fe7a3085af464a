"""Figure 4: few-shot sine regression, test MSE against fine-tuning steps, every method.

``lft reproduce figure4 --profile quick|paper`` meta-trains FO/ZO-LFT, FO/ZO-L2O, MAML and the
learned-initialisation hybrid ``lft+init``, tunes SGD and Adam on meta-training tasks, evaluates
all of them on the same held-out test tasks, and writes ``results.json``, ``table.md``,
``figure4.png`` and the per-task curves (``curves.safetensors``) into the output folder.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from lft import validation
from lft.experiments import zo_rivals
from lft.experiments.jobs import MethodJob
from lft.experiments.jobstore import JobStore
from lft.experiments.profiles import Profile, optional
from lft.experiments.results import (
    curve_rows,
    default_out,
    machine,
    results_document,
    utc_now,
    write_json,
)
from lft.experiments.runner import job_key, run_jobs
from lft.meta.evaluate import Curve
from lft.meta.learners import preset
from lft.oracles import estimator_name, queries_per_step
from lft.tasks import SineFamily

ARTEFACT = "figure4"
TABLE_STEPS = (0, 1, 5, 10, 20)

#: the zeroth-order oracle of the ZO rows: 20 directions plus the base point per step, the
#: history estimator (chosen on meta-training tasks by probes/zo_oracles.py); Gaussian
#: directions and a learned sampling distribution at the same budget are ZO-LFT variants
ZO_ORACLE, GAUSSIAN, LEARNED = zo_rivals.HISTORY, zo_rivals.GAUSSIAN, zo_rivals.LEARNED

#: Wall seconds of each job in the paper run of ``results/figure4/`` (2 workers), scaled by a
#: profile's meta-iterations to deal the longest jobs first; only their order matters.
PAPER_COST_S = {"FO-LFT": 416, "ZO-LFT": 469, "FO-L2O": 436, "ZO-L2O": 511, "MAML": 51,
                "FO-LFT+INIT": 420, "SGD": 1, "Adam": 1}
LEARNED_METHODS = ("lft", "l2o", "lft+init", "maml")


@dataclasses.dataclass(frozen=True)
class Figure4Profile(Profile):
    """One profile of Figure 4 (validated at construction; see :mod:`lft.experiments.profiles`).

    Attributes:
        iterations: meta-training iterations per learned method (``lft``, ``l2o``,
            ``lft+init``, ``maml``).
        meta_batch: tasks per meta-iteration (MAML: ``maml_meta_batch``).
        test_tasks: held-out test tasks; ``steps``: fine-tuning steps.
        tune_tasks: meta-training tasks SGD's and Adam's learning rates are tuned on, from
            ``lr_grid`` (and the ZO rivals', unless ``zo_rivals`` has its own ``grid``).
        meta_lr: meta-learning rate per learned method (1e-3 when absent); ``lr_decay``: its
            final fraction (cosine schedule).
        workers: worker processes (at most the machine's cores).
        zo_oracle: the oracle of the ZO rows (``None``: each preset's own).
        zo_variants: ``{name: oracle}``: more ZO-LFT rows, one per oracle.
        zo_rivals: the tuned ZO rivals, a dict of ``oracles`` (list of oracle dicts),
            ``budgets`` (steps), ``rules`` (of ``sgd``, ``signsgd``, ``adam``) and optional
            ``grid``; ``None``: no rivals.
        zo_iterations: meta-iterations of the ZO methods (default: ``iterations``).
        meta_seeds: ZO-LFT meta-trained this many times, one seed each (default 1).
        only: the labels of the only methods to run (default all).
    """

    ARTEFACT = ARTEFACT

    iterations: dict
    meta_batch: int
    maml_meta_batch: int
    test_tasks: int
    steps: int
    tune_tasks: int
    lr_grid: list
    meta_lr: dict
    lr_decay: float
    workers: int
    zo_oracle: dict | None = optional()
    zo_variants: dict = dataclasses.field(default_factory=dict)
    zo_rivals: dict | None = optional()
    zo_iterations: int | None = optional()
    meta_seeds: int | None = optional()
    only: list | None = optional()

    def __post_init__(self):
        self._int_values("iterations", LEARNED_METHODS)
        self._int("meta_batch", "maml_meta_batch", "test_tasks", "steps", "tune_tasks",
                  "workers")
        self._grid("lr_grid")
        self._number_values("meta_lr")
        self._number("lr_decay")
        if self.zo_oracle is not None:
            self._keys("zo_oracle", ["type"])
        for name in self._keys("zo_variants", ()):
            if not isinstance(self.zo_variants[name], dict):
                raise ValueError(f"{self._where}: zo_variants[{name!r}] must be an oracle dict")
        if self.zo_rivals is not None:
            zr = self._keys("zo_rivals", ["oracles", "budgets", "rules"])
            for rule in zr["rules"]:
                validation.choice("zo_rivals rule", rule, zo_rivals.RULES, where=self._where)
            for k in zr["budgets"]:
                validation.integer("zo_rivals budget", k, 1, self.steps, where=self._where)
            if "grid" in zr:
                self._grid("zo_rivals grid", zr["grid"])
        if self.zo_iterations is not None:
            self._int("zo_iterations")
        if self.meta_seeds is not None:
            self._int("meta_seeds")
        if self.only is not None:
            self._choices("only", PAPER_COST_S)


#: Each profile: meta-training iterations per method, meta-batch, test tasks, tuning budget,
#: the ZO oracle, ZO-LFT variants and the ZO rivals (oracles, budgets, rules, grid).
PROFILES: dict[str, Figure4Profile] = {
    "quick": Figure4Profile(
        iterations={"lft": 40, "l2o": 40, "lft+init": 40, "maml": 300},
        meta_batch=4, maml_meta_batch=25, test_tasks=100, steps=20,
        tune_tasks=50, lr_grid=[0.001, 0.003, 0.01, 0.03],
        meta_lr={"lft": 3e-3, "l2o": 3e-3, "lft+init": 3e-3, "maml": 1e-3},
        lr_decay=0.1, workers=1, zo_oracle=ZO_ORACLE,
        zo_variants={"learned": LEARNED},
        zo_rivals={"oracles": [GAUSSIAN, ZO_ORACLE], "budgets": [1, 5, 20],
                   "rules": ["signsgd"]}),
    "paper": Figure4Profile(
        iterations={"lft": 4000, "l2o": 4000, "lft+init": 4000, "maml": 20000},
        zo_iterations=1500,
        meta_batch=8, maml_meta_batch=25, test_tasks=500, steps=20,
        tune_tasks=200, lr_grid=[0.0003, 0.001, 0.003, 0.01, 0.03, 0.1],
        meta_lr={"lft": 3e-3, "l2o": 3e-3, "lft+init": 3e-3, "maml": 1e-3},
        lr_decay=0.1, workers=2, zo_oracle=ZO_ORACLE,
        zo_variants={"gaussian": GAUSSIAN, "learned": LEARNED},
        zo_rivals={"oracles": [GAUSSIAN, ZO_ORACLE], "budgets": [1, 5, 10, 20],
                   "rules": ["sgd", "signsgd", "adam"],
                   "grid": [0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3]}),
}
#: ``paper-zo-seeds``: ZO-LFT of the paper profile meta-trained with 3 seeds (seed 0 is the
#: paper run's), against the same tuned ZO rivals on the same test tasks
PROFILES["paper-zo-seeds"] = dataclasses.replace(PROFILES["paper"], meta_seeds=3,
                                                 only=["ZO-LFT"])

#: (method, zeroth-order?) in table order.
METHODS = [("lft", False), ("lft", True), ("l2o", False), ("l2o", True), ("maml", False),
           ("lft+init", False), ("sgd", False), ("adam", False)]


def make_jobs(profile: Figure4Profile, out: Path, seed: int) -> list[MethodJob]:
    """The jobs of a profile, for :func:`lft.experiments.runner.run_jobs`."""
    family = SineFamily()
    jobs = []
    methods = [(name, zo, None) for name, zo in METHODS]
    methods[2:2] = [("lft", True, variant) for variant in profile.zo_variants]
    paper = PROFILES["paper"]
    for name, zo, variant in methods:
        cfg = preset(name, zo=zo)
        if zo and profile.zo_oracle is not None:
            cfg.oracle = dict(profile.zo_variants[variant] if variant else profile.zo_oracle)
        learned = cfg.learn_rule or cfg.learn_init
        mb = profile.maml_meta_batch if name == "maml" else profile.meta_batch
        label = f"{cfg.label} [{variant}]" if variant else cfg.label
        common = {"label": label, "family": family.config(), "method": cfg.to_dict(),
                  "out": str(out), "steps": profile.steps, "test_tasks": profile.test_tasks,
                  "seed": seed, "test_seed": seed}
        if learned:
            iterations = profile.iterations[name]
            if zo and profile.zo_iterations is not None:
                iterations = profile.zo_iterations
            paper_iterations = paper.zo_iterations if zo else paper.iterations[name]
            job = MethodJob(**common, train={
                "iterations": iterations, "meta_batch": mb,
                "meta_lr": profile.meta_lr.get(name, 1e-3), "clip": 1.0, "seed": seed,
                "log_every": 25, "lr_decay": profile.lr_decay},
                estimate_s=PAPER_COST_S[cfg.label] * iterations / paper_iterations)
        else:
            job = MethodJob(**common, tune={"grid": profile.lr_grid,
                                            "tasks": profile.tune_tasks},
                            estimate_s=PAPER_COST_S[cfg.label])
        meta_seeds = profile.meta_seeds or 1
        if learned and zo and not variant and meta_seeds > 1:
            job = job.replace(meta_seed=0)  # more meta-training runs of ZO-LFT, one draw each
            jobs.append(job)
            for k in range(1, meta_seeds):
                jobs.append(job.replace(label=f"{label} seed {k}", meta_seed=k,
                                        train={**job.train, "seed": seed + k}))
        else:
            jobs.append(job)
    if profile.only is not None:  # a profile of a few methods (e.g. ZO-LFT's meta-seeds)
        jobs = [j for j in jobs if j.label.split(" seed ")[0] in profile.only]
    maml = next((j for j in jobs if j.label == "MAML"), None)
    if maml:  # two-stage meta-training: lft+init from MAML's initialisation
        jobs = [j.replace(init_from=str(out / "checkpoints" / f"{job_key(maml)}.safetensors"),
                          after=maml.label) if j.label == "FO-LFT+INIT" else j for j in jobs]
    return jobs


#: Claims checked in every run: (method A, method B), A should have the lower MSE.
COMPARISONS = [("FO-LFT", "FO-L2O"), ("ZO-LFT", "ZO-L2O"), ("FO-LFT", "Adam"), ("FO-LFT", "SGD"),
               ("FO-LFT+INIT", "MAML"), ("ZO-LFT", "FO-LFT")]


def paired_differences(records: list[dict], steps: tuple[int, ...]) -> list[dict]:
    """``MSE_A - MSE_B`` per test task (same tasks, same random starts), mean ± 95% CI.

    Every method is evaluated on the same held-out tasks from the same initial optimisees, so
    the paired difference is far more precise than comparing two marginal intervals.
    """
    by_label = {r["label"]: torch.tensor(r["curves"]["mse"]) for r in records}
    out = []
    for a, b in COMPARISONS:
        if a not in by_label or b not in by_label:
            continue
        diff = Curve("mse_diff", by_label[a] - by_label[b])
        mean, ci = diff.mean(), diff.ci95()
        ratio = by_label[a].mean(0) / by_label[b].mean(0)
        out.append({"a": a, "b": b, "steps": {
            str(k): {"diff_mean": float(mean[k]), "diff_ci95": float(ci[k]),
                     "ratio_of_means": float(ratio[k])} for k in steps if k < len(mean)}})
    return out


def write_table(path: Path, records: list[dict], profile_name: str, wall: float) -> str:
    """Markdown table of test MSE (mean ± 95% CI) at selected steps."""
    steps = [s for s in TABLE_STEPS if s <= len(records[0]["curves"]["mse"][0]) - 1]
    lines = [f"# Figure 4 — few-shot sine regression (profile `{profile_name}`)", "",
             "Test MSE on 100 fresh points per task, mean ± 95% CI over "
             f"{len(records[0]['curves']['mse'])} held-out tasks, after k fine-tuning steps "
             "on the task's 10 shots.", "",
             "| method | " + " | ".join(f"k={s}" for s in steps) + " | notes |",
             "|---|" + "---|" * (len(steps) + 1)]
    for r in records:
        c = Curve("mse", torch.tensor(r["curves"]["mse"]))
        mean, ci = c.mean(), c.ci95()
        note = (f"lr {r['tuned_lr']:g} (tuned on meta-training tasks)" if "tuned_lr" in r
                else f"{r['train_stats']['iterations']} meta-iterations, "
                     f"{r['train_stats']['skipped_nonfinite']} skipped")
        cells = " | ".join(f"{mean[s]:.3f} ± {ci[s]:.3f}" for s in steps)
        lines.append(f"| {r['label']} | {cells} | {note} |")
    lines += ["", "Paired differences (same test tasks, same random starts): mean of "
              "MSE(A) − MSE(B) ± 95% CI; negative means A is better. Ratio: MSE(A)/MSE(B).",
              "", "| A − B | " + " | ".join(f"k={s}" for s in steps if s > 0) + " |",
              "|---|" + "---|" * len([s for s in steps if s > 0])]
    for c in paired_differences(records, steps):
        cells = " | ".join(
            f"{v['diff_mean']:+.3f} ± {v['diff_ci95']:.3f} (×{v['ratio_of_means']:.2f})"
            for k, v in c["steps"].items() if int(k) > 0)
        lines.append(f"| {c['a']} − {c['b']} | {cells} |")
    lines += ["", f"Wall time: {wall / 60:.1f} min on {machine()}.", ""]
    text = "\n".join(lines)
    path.write_text(text)
    return text


def plot(path: Path, records: list[dict]) -> None:
    """Test MSE against fine-tuning steps, one line (with 95% CI band) per method."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in records:
        c = Curve("mse", torch.tensor(r["curves"]["mse"]))
        mean, ci = c.mean().numpy(), c.ci95().numpy()
        k = range(len(mean))
        style = "--" if r["oracle"] == "zo" else "-"
        ax.plot(k, mean, style, label=r["label"], lw=1.8)
        ax.fill_between(k, mean - ci, mean + ci, alpha=0.15)
    ax.set_xlabel("fine-tuning steps")
    ax.set_ylabel("test MSE")
    ax.set_yscale("log")
    ax.set_title("Few-shot sine regression (10 shots)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _queries(record: dict, shots: int) -> int:
    return queries_per_step(record["method_config"]["oracle"], shots)


def reproduce(profile: str = "quick", out: str | Path | None = None, seed: int = 0,
              workers: int | None = None, progress: bool = True,
              profile_overrides: dict | None = None,
              resume: bool = False) -> dict:
    """Run the whole artefact; returns the ``results.json`` document. With ``resume``, jobs
    that a killed run in ``out`` finished are read back, not run again (``OUT/jobs``)."""
    prof = Figure4Profile.resolve(PROFILES, profile, profile_overrides)
    out = Path(out or default_out(ARTEFACT, profile))
    out.mkdir(parents=True, exist_ok=True)
    started, t0 = utc_now(), time.perf_counter()
    family = SineFamily()
    jobs = make_jobs(prof, out, seed)
    zr = prof.zo_rivals
    tuning = {}
    if zr:  # ZO-SGD/signSGD/Adam, each tuned for each budget on meta-training tasks
        tuning = zo_rivals.tune(family.config(), zr["oracles"], zr.get("grid", prof.lr_grid),
                                zr["budgets"], prof.tune_tasks, seed,
                                rules=tuple(zr["rules"]))
        common = {"family": family.config(), "out": str(out), "steps": prof.steps,
                  "test_tasks": prof.test_tasks, "seed": seed, "test_seed": seed}
        jobs += [MethodJob.from_dict(j) for j in zo_rivals.jobs(tuning, common, prof.steps)]
    workers = workers or min(prof.workers, os.cpu_count() or 1)
    records = run_jobs(jobs, workers=workers, progress=progress,  # lft+init after MAML
                       store=JobStore(out / "jobs", resume))
    wall = time.perf_counter() - t0
    rivals = {(j.zo_rival, j.lr): Curve("mse", torch.tensor(r["curves"]["mse"]))
              for j, r in zip(jobs, records) if j.zo_rival is not None}
    methods = [(j, r) for j, r in zip(jobs, records) if j.zo_rival is None]
    records = [r for _, r in methods]
    rows = []
    for j, r in methods:
        learned = "train_stats" in r
        q = _queries(r, family.shots)
        extra = {"estimator": estimator_name(r["method_config"]["oracle"])} \
            if r["oracle"] == "zo" else {}
        if j.meta_seed is not None:
            extra["meta_seed"] = j.meta_seed
        rows += [{**row, **extra, "queries": q * row["step"]} for row in curve_rows(
            Curve("mse", torch.tensor(r["curves"]["mse"])), r["name"], r["oracle"],
            "sine" if learned else "none", "sine")]
    at_k = zo_rivals.curves_at_budgets(tuning, rivals)
    rows += zo_rivals.rows(tuning, at_k, "mse", "sine", family.shots)
    for j, r in methods:
        if r["oracle"] == "zo" and r["name"] == "lft":
            extra = {"estimator": estimator_name(r["method_config"]["oracle"]),
                     **({"meta_seed": j.meta_seed} if j.meta_seed is not None else {})}
            rows += zo_rivals.versus_rows(
                "lft", Curve("mse", torch.tensor(r["curves"]["mse"])), tuning, at_k, "mse",
                "sine", "sine", _queries(r, family.shots), extra)
    config = {"profile": prof.to_dict(), "workers": workers, "zo_rivals": tuning,
              "jobs": [{k: v for k, v in j.to_dict().items() if k != "out"} for j in jobs],
              "outcomes": [{k: v for k, v in r.items() if k != "curves"} for r in records],
              "paired_differences": paired_differences(records, tuple(range(prof.steps + 1)))}
    doc = results_document(ARTEFACT, profile, seed, started, wall, config, rows)
    write_json(out / "results.json", doc)
    save_file({f"{r['label']}/mse": torch.tensor(r["curves"]["mse"]) for r in records},
              str(out / "curves.safetensors"), metadata={"layout": "[task, step] test MSE"})
    text = write_table(out / "table.md", records, profile, wall)
    if tuning:
        with open(out / "table.md", "w") as f:
            f.write(text.rstrip("\n") + "\n\n" + rival_table(rows, tuning) + "\n")
    plot(out / "figure4.png", records)
    return doc


def rival_table(rows: list[dict], tuning: dict) -> str:
    """Markdown: each ZO rival at the budgets it was tuned for, and ZO-LFT minus it."""
    budgets = sorted({k for t in tuning.values() for k in t["best"]})
    evals = {f"{queries_per_step(t['oracle'], 0)} for {estimator_name(t['oracle'])}"
             for t in tuning.values()}
    head = "| | " + " | ".join(f"k={k}" for k in budgets) + " |\n|---|" + "---|" * len(budgets)
    lines = ["## Zeroth-order rivals at the same loss evaluations, tuned for each budget", "",
             "Hand-designed rules fed the same kind of estimates as ZO-LFT at the same loss "
             f"evaluations per step ({', '.join(sorted(evals))}), each "
             "with its learning rate tuned for step k on meta-training tasks (in brackets). "
             "Test MSE, mean ± 95% CI; then ZO-LFT's paired difference (negative: ZO-LFT "
             "lower), win/loss where the CI excludes 0.", "", head]
    for key, t in tuning.items():
        est = key.split("/")[1]
        cells = []
        for k in budgets:
            r = next(r for r in rows if r.get("versus") is None and r["method"] == t["rule"]
                     and r.get("estimator") == est and r["step"] == k)
            cells.append(f"{r['mean']:.3f} ± {r['ci95']:.3f} [{t['best'][k]:g}]")
        lines.append(f"| {zo_rivals.LABELS[t['rule']]} [{est}] | " + " | ".join(cells) + " |")
    for est, seed in sorted({(r["estimator"], r.get("meta_seed", -1)) for r in rows
                             if r.get("versus_estimator")}):
        title = f"ZO-LFT [{est}]" + (f" meta-seed {seed}" if seed >= 0 else "")
        lines += ["", f"{title} minus each rival:", "", head]
        for key, t in tuning.items():
            cells = []
            for k in budgets:
                r = next(r for r in rows if r.get("versus") == f"{t['rule']}/zo"
                         and r["versus_estimator"] == key.split("/")[1] and r["step"] == k
                         and r["estimator"] == est and r.get("meta_seed", -1) == seed)
                verdict = "win" if r["mean"] + r["ci95"] < 0 else (
                    "loss" if r["mean"] - r["ci95"] > 0 else "tie")
                cells.append(f"{r['mean']:+.3f} ± {r['ci95']:.3f} {verdict}")
            lines.append(f"| − {zo_rivals.LABELS[t['rule']]} [{key.split('/')[1]}] | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines)
