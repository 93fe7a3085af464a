"""More learned methods at a finished Table 1 run's settings, in a folder of their own.

``python -m lft.experiments.table1_extra RESULTS_DIR --method lft --oracle zo --train
mnist+cifar10 --out results/table1-zo [--iterations N] [--test-tasks N] [--q Q]`` reads
``RESULTS_DIR/results.json`` (a ``lft reproduce table1`` run), and meta-trains and tests the
requested method with everything else as that run had it: the profile, the chosen lambda, the
victims, the held-out test tasks (same seed, so the same tasks and random starts as the table's
rows), the recorded steps and the 75%-ASR threshold. The ZO rows of Table 1 cost several times
the FO ones (``q`` antithetic pairs of victim evaluations per step), so they are run this way,
on request, rather than in the paper profile.

It writes ``results.json`` (the shared schema; ``config.base`` names the run it extends),
``table1_extra.md`` (the new rows beside the base run's rows of the same training source), the
checkpoints and the meta-training logs. No lambda sweep is run (``--sweep`` to add it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from lft.experiments.results import (
    meta_training_summary,
    note_matches,
    results_document,
    utc_now,
    write_json,
)
from lft.experiments.runner import run_jobs
from lft.experiments.table1 import ARTEFACT, TESTS, cells, make_jobs, schema_rows, tuned_lrs
from lft.experiments.table1_jobs import run_job
from lft.experiments.table1_report import TITLES
from lft.experiments.table1_spec import Table1Profile
from lft.experiments.uap_jobs import Table1Job

METHODS = ("lft", "l2o")
ORACLES = ("fo", "zo")


def extra_jobs(base: dict, out: Path, method: str, oracle: str, train: list[str],
               iterations: int | None = None, test_tasks: int | None = None,
               q: int | None = None, sweep: bool = False
               ) -> tuple[Table1Profile, list[Table1Job]]:
    """The profile (the base run's, read through :meth:`Table1Profile.from_dict`, with the
    overrides) and the jobs of ``method``/``oracle`` meta-trained on each source of
    ``train``, at the lambda of the base run ``base`` (its results.json)."""
    cfg = base["config"]
    changes: dict = {"oracles": [oracle]}
    if iterations is not None:
        changes["iterations"] = {**cfg["profile"]["iterations"], method: iterations}
    if test_tasks is not None:
        changes["test_tasks"] = test_tasks
    prof = Table1Profile.from_dict({**cfg["profile"], **changes})
    jobs = make_jobs(prof, out, base["seed"], cfg["data_dir"], cfg["lambda"],
                     tuned_lrs(cfg["tuning"]))
    jobs = [j for j in jobs if j.kind == "learned" and j.name == method
            and j.oracle == oracle and j.train_source in train]
    for i, j in enumerate(jobs):
        more: dict = {} if sweep else {"sweep": {}}
        if q is not None and oracle == "zo":
            more["method"] = {**j.method, "oracle": {**j.method["oracle"], "q": q}}
        jobs[i] = j.replace(**more)
    return prof, jobs


def _cell(rows: list[dict], key: tuple, test: str, k: int, lam: float) -> str:
    """``ASR ± CI / distortion / steps`` of one row set at step ``k`` and lambda ``lam`` (a
    base run also holds its sweep's rows at other lambdas, at the same steps)."""
    note = f"lambda={lam:g}"

    def find(metric, step):
        return next((r for r in rows if (r["method"], r["oracle"], r["train_source"]) == key
                     and r["test_source"] == test and r["metric"] == metric
                     and r["step"] == step and r["mean"] is not None
                     and note_matches(r.get("note"), note)), None)

    asr, dist, hit = find("asr", k), find("distortion", k), find("steps_to_asr75", None)
    if asr is None:
        return "—"
    steps = "N/A" if hit is None or hit["mean"] is None else f"{hit['mean']:.0f}"
    return (f"{100 * asr['mean']:.0f} ± {100 * asr['ci95']:.0f}% / {dist['mean']:.3f} / "
            f"{steps}")


def write_table(path: Path, rows: list[dict], base_rows: list[dict], jobs: list[Table1Job],
                records: list[dict], prof: Table1Profile, lam: float, wall: float,
                base_dir: str) -> None:
    """The new rows beside the base run's rows of the same training sources (``records``:
    the jobs' outcomes, for their meta-training statistics)."""
    k = prof.steps
    lines = [f"# Table 1, more rows (lambda = {lam:g}, the base run's; {base_dir})", "",
             f"Each cell: ASR ± 95% CI / distortion ||delta||_2/sqrt(d) / mean steps to 75% "
             f"ASR, after {k} steps, on the base run's stream of held-out test tasks (new "
             f"rows: the first {prof.test_tasks} per source; base rows: as many as its "
             "table has; the mix pools the sources).", "",
             "| meta-train on | method | " + " | ".join(f"test: {TITLES[t]}" for t in TESTS)
             + " |", "|---|---|" + "---|" * len(TESTS)]
    for j in jobs:
        for src, label, pool in (("new", f"{j.oracle.upper()}-{j.name.upper()}", rows),
                                 ("base", f"FO-{j.name.upper()} (base run)", base_rows)):
            key = (j.name, j.oracle if src == "new" else "fo", j.train_source)
            lines.append(f"| {TITLES[j.train_source]} | {label} | "
                         + " | ".join(_cell(pool, key, t, k, lam) for t in TESTS) + " |")
    lines += ["", meta_training_summary(records), ""]
    lines += [f"{j.label}: oracle {json.dumps(j.method['oracle'])}" for j in jobs]
    lines += ["", f"Wall time: {wall / 60:.1f} min."]
    path.write_text("\n".join(lines) + "\n")


def run(base_dir: str | Path, out: str | Path, method: str = "lft", oracle: str = "zo",
        train: list[str] | None = None, iterations: int | None = None,
        test_tasks: int | None = None, q: int | None = None, sweep: bool = False,
        workers: int = 2, progress: bool = True) -> dict:
    """Run the extra rows and write their outputs to ``out``; returns the results document."""
    base_path = Path(base_dir) / "results.json"
    if not base_path.is_file():
        raise FileNotFoundError(f"{base_path} not found: pass the folder of a finished "
                                "`lft reproduce table1` run")
    base = json.loads(base_path.read_text())
    if base.get("artefact") != ARTEFACT:
        raise ValueError(f"{base_path} is a {base.get('artefact')!r} run, not {ARTEFACT!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started, t0 = utc_now(), time.perf_counter()
    prof, jobs = extra_jobs(base, out, method, oracle, train or ["mnist+cifar10"], iterations,
                            test_tasks, q, sweep)
    if not jobs:
        raise ValueError(f"no {oracle.upper()}-{method.upper()} job for training sources {train}")
    records = run_jobs(jobs, min(workers, len(jobs)), progress, run=run_job,
                       desc=f"{oracle.upper()}-{method.upper()} jobs")
    table = cells(records, jobs)
    rows = [r for r in schema_rows(table, prof) if r["method"] == method]
    wall = time.perf_counter() - t0
    config = {"base": {"results": str(base_path), "git_commit": base.get("git_commit")},
              "profile": prof.to_dict(), "lambda": base["config"]["lambda"],
              "data_dir": base["config"]["data_dir"], "workers": workers,
              "jobs": [{k: v for k, v in j.to_dict().items() if k not in ("out", "sweep")}
                       for j in jobs],
              "outcomes": [{k: v for k, v in r.items() if k not in ("tests", "sweep")}
                           for r in records]}
    doc = results_document(ARTEFACT, base["profile"], base["seed"], started, wall, config, rows)
    write_json(out / "results.json", doc)
    write_table(out / "table1_extra.md", rows, base["rows"], jobs, records, prof,
                base["config"]["lambda"], wall, str(base_dir))
    return doc


def report(out: str | Path) -> None:
    """Re-render ``table1_extra.md`` from ``out/results.json`` and its base run's (its profile
    and jobs read back as :class:`Table1Profile` and :class:`Table1Job`, the jobs' ``out``
    being ``out``: ``results.json`` leaves it out)."""
    out = Path(out)
    doc = json.loads((out / "results.json").read_text())
    cfg = doc["config"]
    base_path = Path(cfg["base"]["results"])
    base = json.loads(base_path.read_text())
    jobs = [Table1Job.from_dict({**j, "out": str(out)}) for j in cfg["jobs"]]
    write_table(out / "table1_extra.md", doc["rows"], base["rows"], jobs, cfg["outcomes"],
                Table1Profile.from_dict(cfg["profile"]), cfg["lambda"], doc["wall_time_s"],
                str(base_path.parent))


def main(argv: list[str] | None = None) -> int:
    """``python -m lft.experiments.table1_extra`` (see the module docstring); exit status 2
    on a missing or foreign base run."""
    p = argparse.ArgumentParser(prog="python -m lft.experiments.table1_extra",
                                description=__doc__.splitlines()[0])
    p.add_argument("base", help="folder of a finished `lft reproduce table1` run")
    p.add_argument("--out", required=True)
    p.add_argument("--method", choices=METHODS, default="lft")
    p.add_argument("--oracle", choices=ORACLES, default="zo")
    p.add_argument("--train", nargs="+", choices=("mnist", "mnist+cifar10"),
                   default=["mnist+cifar10"])
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument("--test-tasks", type=int, default=None)
    p.add_argument("--q", type=int, default=None, help="ZO directions per step")
    p.add_argument("--sweep", action="store_true", help="also test at the other lambdas")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    try:
        run(a.base, a.out, a.method, a.oracle, a.train, a.iterations, a.test_tasks, a.q,
            a.sweep, a.workers, not a.quiet)
    except (FileNotFoundError, ValueError) as e:
        print(f"table1_extra: error: {e}", file=sys.stderr)
        return 2
    print((Path(a.out) / "table1_extra.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["extra_jobs", "main", "report", "run", "write_table"]
