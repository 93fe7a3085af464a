"""What ``uap-rivals`` writes: schema rows, paired differences, per-task values, Markdown.

:func:`collect` turns the jobs' records into one table keyed ``(source, method, meta_seed)``
(``meta_seed`` ``None`` for methods that are not meta-trained); the other functions read it.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors.torch import save_file

from lft.experiments.results import curve_rows, machine
from lft.experiments.uap_jobs import UAPRivalsJob
from lft.experiments.uap_rivals_spec import METHODS, UAPRivalsProfile
from lft.meta.evaluate import Curve

#: the tables' order, and that of the paired differences (earlier - later)
ORDER = METHODS
TITLES = {"mnist": "MNIST", "cifar10": "CIFAR-10"}
DEFINITIONS = {
    "asr": "fraction of a task's held-out test images whose top-1 label under "
           "clamp(x + delta, 0, 1) is not the true one",
    "distortion": "||delta||_2 / sqrt(d), d = C*H*W",
    "eps": "the budget's radius: ||delta||_2 <= eps over all C*H*W pixels (norm '2', as IBM "
           "ART's UniversalPerturbation defines it on images in [0, 1]) or |delta_i| <= eps "
           "(norm 'inf'); chosen per source on meta-training tasks (config.eps_search)",
    "queries": "victim images back-propagated per task up to the step: 10 per fine-tuning step "
               "(the task's fine-tuning images) for the fine-tuners; for ART, the images its "
               "loss_gradient calls back-propagated, counted per attack (its forward-only label "
               "checks are in config.outcomes as 'predictions')",
    "wall_time_s": "seconds per attack: the fine-tuners run a batch of test tasks at once "
                   "(total fine-tuning time over the tasks, metrics excluded); ART attacks one "
                   "task at a time",
    "versus": "per-task ASR difference at the last step, this method minus the rival, over the "
              "same test tasks (and random starts for the fine-tuners); against an external "
              "attack that spent fewer queries, a second row at the fine-tuner's last step "
              "within that attack's mean queries"}


def collect(jobs: list[UAPRivalsJob], records: list[dict]) -> dict[tuple, dict]:
    """``(source, method, meta_seed) -> cell``. A fine-tuner's cell: ``asr``, ``distortion``
    ``(tasks, recorded steps)``, ``steps``, ``queries`` per recorded step, ``wall_time_s`` per
    attack; an ART cell: per-task ``asr``, ``distortion``, ``queries``, ``predictions``,
    ``wall_time_s`` ``(tasks,)`` and ``steps`` ``None``. Each cell also has ``train_source``,
    ``eps`` and ``norm``."""
    table: dict[tuple, dict] = {}

    def fine_tuner(curves: dict, train_source: str, sel: dict) -> dict:
        per, steps = curves["images_per_step"], curves["steps"]
        return {"asr": curves["asr"], "distortion": curves["distortion"], "steps": steps,
                "queries": [k * per for k in steps], "wall_time_s": curves["wall_time_s"],
                "train_source": train_source, "eps": sel["eps"], "norm": sel["norm"]}

    for job, rec in zip(jobs, records):
        source, sel = job.source, job.selection
        if job.kind == "learned":
            table[(source, job.method, job.meta_seed)] = fine_tuner(rec["curves"], source, sel)
            continue
        for name, r in rec["methods"].items():
            if "curves" in r:
                table[(source, name, None)] = fine_tuner(r["curves"], "none", sel)
            else:
                v = r["values"]
                table[(source, name, None)] = {
                    **{k: v[k] for k in ("asr", "distortion", "queries", "predictions")},
                    "steps": None, "wall_time_s": float(v["wall_time_s"].mean()),
                    "train_source": "none", "eps": sel["eps"], "norm": sel["norm"]}
    return table


def outcomes(jobs: list[UAPRivalsJob], records: list[dict]) -> list[dict]:
    """Each job's record without per-task values: configurations, tuned settings, meta-training
    statistics, checkpoints, wall times."""
    out = []
    for job, rec in zip(jobs, records):
        entry = {"kind": job.kind, "source": job.source}
        if job.kind == "learned":
            entry.update(method=job.method, meta_seed=job.meta_seed,
                         **{k: v for k, v in rec.items() if k != "curves"},
                         wall_time_per_attack_s=rec["curves"]["wall_time_s"])
        else:
            entry["job_wall_time_s"] = rec["job_wall_time_s"]
            for name, r in rec["methods"].items():
                if "curves" in r:
                    entry[name] = {"method_config": r["method_config"],
                                   "wall_time_per_attack_s": r["curves"]["wall_time_s"]}
                else:
                    v = r["values"]
                    entry[name] = {"settings": r["settings"],
                                   "queries_mean": float(v["queries"].mean()),
                                   "predictions_mean": float(v["predictions"].mean()),
                                   "wall_time_per_attack_s": float(v["wall_time_s"].mean())}
        out.append(entry)
    return out


def _final(cell: dict) -> torch.Tensor:
    """Per-task ASR at the last recorded step (an ART cell's only value)."""
    return cell["asr"] if cell["steps"] is None else cell["asr"][:, -1]


def _num(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _extras(cell: dict, meta_seed: int | None) -> dict:
    return {"eps": cell["eps"], "norm": cell["norm"],
            **({} if meta_seed is None else {"meta_seed": meta_seed})}


def pairs(table: dict) -> list[tuple[tuple, tuple]]:
    """``(this, rival)`` cell keys for the paired differences: every method against every later
    one in :data:`ORDER`, per source; two learned methods are paired seed by seed."""
    out = []
    for this in table:
        for rival in table:
            if this[0] != rival[0] or ORDER.index(this[1]) >= ORDER.index(rival[1]):
                continue
            if this[2] is not None and rival[2] is not None and this[2] != rival[2]:
                continue
            out.append((this, rival))
    return sorted(out, key=lambda p: (p[0][0], ORDER.index(p[0][1]), p[0][2] or 0,
                                      ORDER.index(p[1][1])))


def paired(table: dict, this: tuple, rival: tuple, column: int = -1
           ) -> tuple[float | None, float | None, int]:
    """Mean and 95% CI of the per-task ASR difference ``this - rival``: ``this`` at its
    recorded step ``column`` (default the last), ``rival`` at its last step."""
    mine = table[this]["asr"] if table[this]["steps"] is None else table[this]["asr"][:, column]
    diff = Curve("asr", (mine - _final(table[rival]))[:, None])
    return _num(diff.mean()[0]), _num(diff.ci95()[0]), diff.n


def matched_column(cell: dict, queries: float) -> int | None:
    """The last recorded step of a fine-tuner whose queries do not exceed ``queries`` (an
    external attack's mean), as a column index; ``None`` if even step 1 exceeds it."""
    fits = [i for i, (k, q) in enumerate(zip(cell["steps"], cell["queries"]))
            if k > 0 and q <= queries]
    return fits[-1] if fits else None


def schema_rows(table: dict, prof: UAPRivalsProfile) -> list[dict]:
    """``results.json`` rows: ``asr`` and ``distortion`` per recorded step of every method (one
    row, ``step`` null, for ART), each with ``queries``, ``eps``, ``norm`` (and ``meta_seed``
    for learned methods); then the ``versus`` rows at the last step."""
    rows = []
    for (source, name, seed), cell in sorted(table.items(), key=lambda kv: (
            kv[0][0], ORDER.index(kv[0][1]), kv[0][2] or 0)):
        extra = _extras(cell, seed)
        if cell["steps"] is not None:
            for metric in ("asr", "distortion"):
                for row, q in zip(curve_rows(Curve(metric, cell[metric], cell["steps"]), name,
                                             "fo", cell["train_source"], source),
                                  cell["queries"]):
                    rows.append({**row, "queries": q, **extra})
            continue
        note = ("IBM ART UniversalPerturbation, attacker " + name.split("-")[1]
                + "; step null: one perturbation per task, no fine-tuning steps")
        for metric in ("asr", "distortion"):
            c = Curve(metric, cell[metric][:, None])
            rows.append({"method": name, "oracle": "fo", "train_source": "none",
                         "test_source": source, "metric": metric, "step": None,
                         "mean": _num(c.mean()[0]), "ci95": _num(c.ci95()[0]), "n": c.n,
                         "note": note, "queries": float(cell["queries"].mean()), **extra})
    for this, rival in pairs(table):
        cell = table[this]
        mean, ci, n = paired(table, this, rival)
        step = None if cell["steps"] is None else cell["steps"][-1]
        queries = float(cell["queries"].mean()) if cell["steps"] is None else cell["queries"][-1]
        rows.append({"method": this[1], "oracle": "fo", "train_source": cell["train_source"],
                     "test_source": this[0], "metric": "asr", "step": step, "mean": mean,
                     "ci95": ci, "n": n,
                     "note": f"paired over the same {n} test tasks; {rival[1]} "
                             + ("has no steps" if table[rival]["steps"] is None
                                else f"at step {table[rival]['steps'][-1]}"),
                     "queries": queries, "versus": rival[1], **_extras(cell, this[2])})
        art = table[rival]
        if cell["steps"] is None or art["steps"] is not None:
            continue
        col = matched_column(cell, float(art["queries"].mean()))
        if col is None or cell["steps"][col] == cell["steps"][-1]:
            continue  # the last step already spends no more than the rival
        mean, ci, n = paired(table, this, rival, col)
        rows.append({"method": this[1], "oracle": "fo", "train_source": cell["train_source"],
                     "test_source": this[0], "metric": "asr", "step": cell["steps"][col],
                     "mean": mean, "ci95": ci, "n": n,
                     "note": f"paired over the same {n} test tasks at equal queries: the last "
                             f"step that back-propagates no more images than {rival[1]} "
                             f"({float(art['queries'].mean()):.0f} per task)",
                     "queries": cell["queries"][col], "versus": rival[1],
                     **_extras(cell, this[2])})
    return rows


def save_per_task(path: str | Path, table: dict) -> None:
    """Per-task values: ``SOURCE/METHOD[/seedK]/METRIC`` (fine-tuners: ``[task, recorded
    step]`` and ``.../steps``; ART: ``[task]``, with ``queries``, ``predictions``,
    ``wall_time_s``)."""
    keep = {}
    for (source, name, seed), cell in table.items():
        key = f"{source}/{name}" + ("" if seed is None else f"/seed{seed}")
        metrics = ("asr", "distortion") if cell["steps"] is not None else (
            "asr", "distortion", "queries", "predictions")
        for m in metrics:
            keep[f"{key}/{m}"] = cell[m].float().contiguous()
        if cell["steps"] is not None:
            keep[f"{key}/steps"] = torch.tensor(cell["steps"])
    save_file(keep, str(path), metadata={
        "layout": "key source/method[/seedK]/metric; fine-tuners [task, recorded step] with "
                  "their recorded steps; ART [task] (queries: images back-propagated)"})


def _pct(c: Curve) -> str:
    return f"{100 * float(c.mean()[-1]):.1f} ± {100 * float(c.ci95()[-1]):.1f}"


def write_table(path: str | Path, doc: dict, table: dict) -> str:
    """``uap-rivals.md``: per source, each method's ASR, distortion, queries and wall time per
    attack at the last step, the paired differences, and how eps and the settings were chosen."""
    cfg, prof = doc["config"], UAPRivalsProfile.from_dict(doc["config"]["profile"])
    norm = cfg["norm"]
    lines = [f"# Fixed-budget UAPs: fine-tuners against IBM ART (profile `{doc['profile']}`)",
             "", f"Budget ||delta||_{norm} <= eps, lambda = 0; 2-way 5-shot UAP tasks (10 "
             f"fine-tuning images); {prof.steps} fine-tuning steps; ASR on each task's "
             "held-out test images, mean ± 95% CI over the same test tasks for every method."
             + ("" if cfg["art_installed"] else " IBM ART is not installed: its rows are "
                "skipped (pip install -e '.[rivals]')."), ""]
    for source in sorted({k[0] for k in table}, key=lambda s: list(TITLES).index(s)):
        search = cfg["eps_search"][source]
        ref = search["reference"]
        lines += [f"## {TITLES.get(source, source)}: eps = {search['eps']:g}", "",
                  f"eps chosen on meta-training tasks: tuned {ref}'s validation ASR "
                  f"{'in' if search['inside_target'] else 'nearest to'} the target range "
                  f"{100 * prof.target_asr[0]:g}-{100 * prof.target_asr[1]:g}% ("
                  + ", ".join(f"eps {s['eps']:g}: {100 * s['val_asr']:.0f}%"
                              for s in search["search"]) + ").", "",
                  "| method | meta-seed | ASR (%) | distortion | queries per task | "
                  "wall time per attack (s) |", "|---|---|---|---|---|---|"]
        cells = sorted(((k, c) for k, c in table.items() if k[0] == source),
                       key=lambda kc: (ORDER.index(kc[0][1]), kc[0][2] or 0))
        for (_, name, seed), cell in cells:
            if cell["steps"] is None:
                asr, dist = Curve("asr", cell["asr"][:, None]), \
                    Curve("d", cell["distortion"][:, None])
                q = float(cell["queries"].mean())
            else:
                asr, dist = Curve("asr", cell["asr"]), Curve("d", cell["distortion"])
                q = cell["queries"][-1]
            lines.append(f"| {name} | {'-' if seed is None else seed} | {_pct(asr)} | "
                         f"{float(dist.mean()[-1]):.4f} | {q:.0f} | "
                         f"{cell['wall_time_s']:.3g} |")
        lines += ["", "Paired ASR differences at the last step (this − rival, points, "
                  "mean ± 95% CI):", "", "| this | meta-seed | rival | difference |",
                  "|---|---|---|---|"]
        for this, rival in pairs(table):
            if this[0] != source:
                continue
            mean, ci, _ = paired(table, this, rival)
            text = "n/a" if mean is None else (f"{100 * mean:+.1f} ± "
                                               + ("n/a" if ci is None else f"{100 * ci:.1f}"))
            lines.append(f"| {this[1]} | {'-' if this[2] is None else this[2]} | {rival[1]} | "
                         f"{text} |")
        tuning = cfg["tuning"][source]
        tuned = [f"{name} lr {rec['lr']:g}" for name, rec in tuning["rules"].items()]
        tuned += [f"{name} " + ", ".join(f"{k}={v:g}" for k, v in
                                         rec["best"]["kwargs"].items())
                  for name, rec in tuning["art"].items()]
        lines += ["", "Tuned on meta-training tasks: " + "; ".join(tuned) + ".", ""]
    lines += ["Queries: victim images back-propagated per task (fine-tuners: 10 per step; ART: "
              "counted). Wall time: the fine-tuners attack a batch of tasks at once (time per "
              "task); ART one task at a time.", "",
              f"Wall time: {doc['wall_time_s'] / 60:.1f} min on {doc.get('machine') or machine()}.",
              ""]
    text = "\n".join(lines)
    Path(path).write_text(text)
    return text


def plot(path: str | Path, rows: list[dict]) -> None:
    """ASR against victim images back-propagated per task, one panel per source: each
    fine-tuner's curve (one line per meta-seed) and ART's attacks as points with their CIs."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sources = [s for s in TITLES if any(r["test_source"] == s for r in rows)]
    fig, axes = plt.subplots(1, len(sources), figsize=(5.5 * len(sources), 4.2), squeeze=False)
    colours = {name: f"C{i}" for i, name in enumerate(ORDER)}
    for ax, source in zip(axes[0], sources):
        mine = [r for r in rows if r["test_source"] == source and r["metric"] == "asr"
                and not r.get("versus")]
        seen = set()
        for name in ORDER:
            for seed in sorted({r.get("meta_seed", -1) for r in mine if r["method"] == name}):
                pts = sorted((r["queries"], 100 * r["mean"], 100 * (r["ci95"] or 0))
                             for r in mine if r["method"] == name
                             and r.get("meta_seed", -1) == seed)
                if not pts:
                    continue
                label = None if name in seen else name
                seen.add(name)
                q, m, ci = zip(*pts)
                if len(pts) == 1:  # an external attack: one perturbation per task
                    ax.errorbar(q, m, yerr=ci, fmt="s", ms=7, capsize=3,
                                color=colours[name], label=label)
                else:
                    ax.plot(q, m, "-", lw=1.3, color=colours[name], label=label)
        eps = mine[0]["eps"] if mine else None
        ax.set_title(f"{TITLES[source]}: ||delta||_2 <= {eps:g}")
        ax.set_xlabel("victim images back-propagated per task")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("held-out ASR (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
