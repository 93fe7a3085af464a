"""The ``lft`` command line: train, evaluate, reproduce.

User errors (bad options, missing files) print one line ``lft: error: ...`` and exit with
status 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

from lft.data.sources import SOURCES
from lft.meta.learners import METHODS
from lft.oracles import ESTIMATORS, at_budget, queries_per_step
from lft.tasks.presets import TASKS
from lft.validation import one_line, positive_arg

ARTEFACTS = ("figure4", "table1", "table2", "budgets", "uap-rivals")
#: Modules that add their own sub-commands: each defines ``register(subparsers)``, which adds
#: a parser and sets its ``handler`` default to a function ``(args) -> exit status``.
COMMAND_MODULES: tuple[str, ...] = ("lft.analysis.cli", "lft.attacks.cli")


class UserError(Exception):
    """A problem with what the user asked for; reported without a traceback."""


class Parser(argparse.ArgumentParser):
    """``argparse`` whose usage errors are one line ``lft: error: ...`` (status 2), not the
    usage block plus an error, so every user error of ``lft`` looks the same."""

    def error(self, message: str):
        sys.stderr.write(f"lft: error: {one_line(message)}; see '{self.prog} --help'\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="lft", description="Learned fine-tuners for few-shot "
               "learning: meta-train, evaluate, reproduce the paper.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="meta-train a method on a task family")
    t.add_argument("--task", default="sine", choices=TASKS,
                   help="task family: sine (no data), mnist (MLP), cifar10 (Conv-4) or "
                        "mnist+cifar10 (incongruous mix); 2-way 5-shot for images; uap-SOURCE: "
                        "universal perturbations against the LeNet-5 victim (Table 1)")
    t.add_argument("--data-dir", default=None,
                   help="image data folder (default $LFT_DATA_DIR, else the user cache folder)")
    t.add_argument("--method", default="lft", choices=[m for m in METHODS
                                                       if m not in ("sgd", "adam", "signsgd")])
    t.add_argument("--zo", action="store_true", help="zeroth-order oracle (function values only)")
    t.add_argument("--queries-per-step", type=positive_arg(int), default=None, metavar="N",
                   help="with --zo: N loss evaluations per step, the base point included "
                        "(forward differences along N-1 directions; default 40, antithetic)")
    t.add_argument("--estimator", choices=ESTIMATORS, default=None,
                   help="with --queries-per-step: the zeroth-order estimator (default "
                        "history: the last 3 estimates kept in the query span)")
    t.add_argument("--learn-init", action="store_true",
                   help="also meta-learn the initial optimisee (congruous tasks only)")
    t.add_argument("--iterations", type=positive_arg(int), default=1000)
    t.add_argument("--meta-batch", type=positive_arg(int), default=None,
                   help="tasks per meta-iteration (default 8; MAML 25)")
    t.add_argument("--meta-lr", type=positive_arg(float), default=None,
                   help="Adam meta-learning rate (default 3e-3; MAML 1e-3)")
    t.add_argument("--lr-decay", type=positive_arg(float), default=0.1,
                   help="final meta-lr as a fraction of the first (cosine schedule)")
    t.add_argument("--horizon", type=positive_arg(int), default=None,
                   help="unrolled fine-tuning steps per episode (default 20; MAML 1)")
    t.add_argument("--truncation", type=positive_arg(int), default=None,
                   help="truncated-BPTT window in steps (default: the whole horizon)")
    t.add_argument("--checkpoint-steps", type=positive_arg(int), default=None, metavar="N",
                   help="gradient checkpointing: recompute inner steps in segments of N during "
                        "backward (less memory for long untruncated unrolls; default off)")
    t.add_argument("--output-scale", type=positive_arg(float), default=None,
                   help="bound of the learned rule's step per coordinate (default 1; 0.01 for "
                        "image classification tasks)")
    t.add_argument("--base-lr", type=positive_arg(float), default=None,
                   help="learning rate of a residual method's hand-designed base (lft+adam, "
                        "lft+sgd, lft+signsgd; default 0.01): tune it first, e.g. as "
                        "`lft reproduce budgets` does")
    t.add_argument("--weighting", choices=("uniform", "linear", "final"), default=None)
    t.add_argument("--second-order", action="store_true",
                   help="keep the Hessian term of the meta-gradient (first-order oracle)")
    t.add_argument("--first-order", action="store_true",
                   help="drop the Hessian term (first-order MAML; the default for LFT/L2O)")
    t.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                   help="start a learned initialisation from this checkpoint's (e.g. MAML's)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default=None, help="output folder (default runs/TASK-METHOD)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint (same options)")
    t.add_argument("--checkpoint-every", type=positive_arg(int), default=100, metavar="N",
                   help="save a resumable checkpoint every N meta-iterations (default 100)")
    t.add_argument("--task-streams", type=positive_arg(int), default=None, metavar="S",
                   help="independent task streams per meta-batch (default: the number of "
                        "ranks); the same S gives the same run on any number of ranks")
    t.add_argument("--dist-timeout", type=positive_arg(float), default=300.0, metavar="SECONDS",
                   help="under torchrun: how long a rank waits for the others before the job "
                        "stops with an error (default 300)")
    t.add_argument("--quiet", action="store_true")

    e = sub.add_parser("evaluate", help="per-step test curve of a checkpoint")
    e.add_argument("checkpoint", help="a checkpoint file or a pretrained fine-tuner's name "
                   "(python -m lft.pretrained list); a name also shows the figures it reported")
    e.add_argument("--tasks", type=positive_arg(int), default=500)
    e.add_argument("--steps", type=positive_arg(int), default=20)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--task", default=None, choices=TASKS,
                   help="test on this named family instead of the checkpoint's own (e.g. a "
                        "fine-tuner meta-trained on the mix, tested on cifar10)")
    e.add_argument("--data-dir", default=None,
                   help="image data folder (default: the checkpoint's, else $LFT_DATA_DIR)")
    e.add_argument("--chunk", type=positive_arg(int), default=None,
                   help="test tasks run at once (default 250; Table 2 used 10; it selects "
                        "which tasks are drawn)")
    e.add_argument("--json", default=None, help="also write the rows to this JSON file")
    e.add_argument("--quiet", action="store_true")

    r = sub.add_parser("reproduce", help="reproduce a figure or table of the paper")
    r.add_argument("artefact", choices=ARTEFACTS)
    r.add_argument("--profile", default="quick",
                   help="quick (a check in minutes) or paper (the committed run); an artefact "
                        "may have more (budgets: paper-mid)")
    r.add_argument("--out", default=None,
                   help="output folder (default results/ARTEFACT for the paper profile, "
                        "results/ARTEFACT-quick for the quick one)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--workers", type=positive_arg(int), default=None,
                   help="parallel processes (default: the profile's, at most the cores)")
    r.add_argument("--data-dir", default=None,
                   help="image data folder for table1/table2 (default $LFT_DATA_DIR, else the "
                        "user cache folder)")
    r.add_argument("--quiet", action="store_true")
    r.add_argument("--resume", action="store_true",
                   help="continue a run killed in --out: jobs it finished (OUT/jobs) are read "
                        "back, the others run; the rows equal an uninterrupted run's")
    for sp in (t, e, r):
        sp.add_argument("--threads", type=positive_arg(int), default=None, metavar="N",
                        help="intra-op CPU threads of this process (default: $OMP_NUM_THREADS, "
                             "else 1 for sine, else the cores the load average leaves free)")
    d = sub.add_parser("data", help="image data sets: download or check them")
    d.add_argument("action", choices=("download", "check"))
    d.add_argument("name", choices=SOURCES)
    d.add_argument("--data-dir", default=None,
                   help="data folder (default $LFT_DATA_DIR, else the user cache folder)")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return p


def cmd_data(a) -> int:
    from lft.data import download, load_source, resolve_data_dir

    if a.action == "download":
        path = download(a.name, a.data_dir, progress=True)
        print(f"{a.name}: files verified in {path}")
        return 0
    splits = load_source(a.name, a.data_dir)
    print(f"{a.name} in {resolve_data_dir(a.data_dir)}:")
    for split, s in splits.items():
        print(f"  {split}: {len(s)} images of shape {s.image_shape}, {len(s.classes)} classes")
    return 0


def cmd_train(a) -> int:
    from lft.meta import TrainConfig, preset
    from lft.meta.distributed import DistributedError, from_env
    from lft.meta.learners import RESIDUAL, contains_rule, with_lstm_options
    from lft.tasks import named_family
    from lft.tasks.presets import RULE_DEFAULTS

    family = named_family(a.task, a.data_dir)
    name = "lft+init" if (a.method == "lft" and a.learn_init) else a.method
    overrides = {}
    if a.horizon:
        overrides["horizon"] = a.horizon
    if a.truncation:
        overrides["truncation"] = a.truncation
    if a.checkpoint_steps:
        overrides["checkpoint_steps"] = a.checkpoint_steps
    if a.weighting:
        overrides["weighting"] = a.weighting
    if a.learn_init:
        overrides["learn_init"] = True
    if a.second_order and a.first_order:
        raise UserError("choose one of --second-order and --first-order")
    if (a.second_order or a.first_order) and a.zo:
        raise UserError("--second-order/--first-order choose how the gradient oracle is "
                        "differentiated; the zeroth-order oracle (--zo) has no such choice")
    if a.second_order or a.first_order:
        overrides["oracle"] = {"second_order": bool(a.second_order)}
    if a.base_lr is not None and name not in RESIDUAL:
        raise UserError(f"--base-lr sets the base rule of {', '.join(sorted(RESIDUAL))}; "
                        f"{name} has none")
    if (a.queries_per_step or a.estimator) and not a.zo:
        raise UserError("--queries-per-step/--estimator set a zeroth-order budget; add --zo")
    if a.estimator and not a.queries_per_step:
        raise UserError("--estimator needs --queries-per-step (the loss evaluations per step)")
    if a.queries_per_step:
        overrides["oracle"] = at_budget(a.estimator or "history", a.queries_per_step)
    cfg = preset(name, zo=a.zo, base_lr=a.base_lr, **overrides)
    if contains_rule(cfg.rule, "lstm"):  # the step bound the task wants, unless given
        cfg.rule = with_lstm_options(cfg.rule, {**RULE_DEFAULTS.get(a.task, {}),
                                                **({} if a.output_scale is None
                                                   else {"output_scale": a.output_scale})})
    elif a.output_scale is not None:
        raise UserError(f"--output-scale bounds a learned rule's steps; {name} has none")
    out = Path(a.out or f"runs/{a.task}-{cfg.label.lower().replace('+', '-plus-')}")
    replicas = None
    try:
        replicas = from_env(a.dist_timeout)  # joins the process group under torchrun
        tcfg = TrainConfig(iterations=a.iterations,
                           meta_batch=a.meta_batch or (25 if name == "maml" else 8),
                           meta_lr=a.meta_lr or (1e-3 if name == "maml" else 3e-3),
                           seed=a.seed, lr_decay=a.lr_decay,
                           task_streams=a.task_streams or replicas.world_size)
        return _train_run(a, cfg, family, tcfg, out, replicas)
    except DistributedError as e:
        last = out / "checkpoint.safetensors"
        hint = (f"; rerun the same command with --resume to continue from {last}"
                if last.is_file() else "")
        print(f"lft: error: {e}{hint}", file=sys.stderr)
        if replicas is not None and replicas.world_size > 1:
            # a peer is gone: tearing the process group down (or letting the interpreter
            # do it at exit) can abort inside gloo's threads (SIGABRT instead of status 1)
            sys.stderr.flush()
            sys.stdout.flush()
            os._exit(1)
        return 1
    finally:
        if replicas is not None:
            replicas.close()


def _train_run(a, cfg, family, tcfg, out: Path, replicas) -> int:
    """Meta-train (or resume) with periodic checkpoints; rank 0 alone writes files.

    Every check (resume, --init-from, the configuration) runs before anything is written, so a
    user error leaves no half-made run folder.
    """
    from lft import resume as runs
    from lft.meta import MetaTrainer, Method, jsonl_logger

    main = replicas.is_main
    path, log = out / runs.CHECKPOINT, out / "metrics.jsonl"
    if a.resume and not path.is_file():
        raise UserError(f"--resume: no checkpoint in {out}; start the run without --resume")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a folder for the run")
    method = Method(cfg, family, seed=a.seed)
    if a.init_from and not a.resume:
        from lft import checkpoint
        from lft.experiments.runner import warm_start_init
        checkpoint.check_warm_start(a.init_from, method, family)
        warm_start_init(method, a.init_from)
    # the log callback creates the folder: attach it once every check has passed
    trainer = MetaTrainer(method, family, tcfg, replicas=replicas)
    config = runs.run_config(trainer, init_from=a.init_from)
    if a.resume:
        start = runs.resume(path, trainer, config)
        if start >= tcfg.iterations:
            if main:
                print(f"{cfg.label}: the run in {out} is already complete "
                      f"({start} meta-iterations); checkpoint: {path}")
            return 0
        if main:
            runs.truncate_log(log, start)
            print(f"resuming {cfg.label} at meta-iteration {start} of {tcfg.iterations} "
                  f"from {path}")
    elif main:
        out.mkdir(parents=True, exist_ok=True)
        log.unlink(missing_ok=True)
        (out / "config.json").write_text(json.dumps(config, indent=1))
    trainer.log = jsonl_logger(log) if main else None
    with runs.StopOnSignal(announce=main) as stop:
        trainer.train(progress=not a.quiet and main, save=lambda: runs.save(path, trainer, config),
                      save_every=a.checkpoint_every, stop=stop)
    s = trainer.stats
    if trainer.stopped:
        if main:
            print(f"lft: stopped at meta-iteration {s.iterations} of {tcfg.iterations}; "
                  f"checkpoint saved to {path}; to continue, rerun the same command with "
                  f"--resume (lft train ... --out {out} --resume)", file=sys.stderr)
        return 130 if stop.received == "SIGINT" else 143
    if main:
        ranks = f" on {replicas.world_size} ranks" if replicas.world_size > 1 else ""
        print(f"{cfg.label}: {s.iterations} meta-iterations in {s.wall_time_s:.0f}s{ranks} "
              f"({s.skipped_nonfinite} non-finite meta-gradients skipped)")
        print(f"checkpoint: {path}\nmetrics log: {log}")
    return 0


def _uap_settings(config: dict) -> dict:
    """The UAP loss settings (``lam``, ``queries``) of a checkpoint's family, mixtures
    included, so that ``--task uap-...`` tests a UAP fine-tuner on the loss it was trained on."""
    if config.get("task") == "uap":
        return {k: config[k] for k in ("lam", "queries") if k in config}
    for sub in config.get("families", []):
        if found := _uap_settings(sub):
            return found
    return {}


def cmd_evaluate(a) -> int:
    import time

    from lft import checkpoint, pretrained
    from lft.experiments.results import curve_rows, results_document, utc_now, write_json
    from lft.meta import evaluate
    from lft.perf import configure_threads

    if a.json and Path(a.json).is_dir():
        raise UserError(f"--json {a.json} is a folder; pass a file name such as rows.json")
    method, family, extra = checkpoint.load(pretrained.resolve(a.checkpoint), a.data_dir)
    method_family_config = family.config()
    if a.task:
        from lft.tasks import build_family, family_config

        uap = _uap_settings(family.config()) if a.task.startswith("uap-") else {}
        family = build_family(family_config(a.task, a.data_dir, **uap))
    if family.config().get("task") == "sine":  # known only now that the checkpoint is read
        configure_threads(a.threads, small=True)
    started, t0 = utc_now(), time.perf_counter()
    curves = evaluate(method, family, n_tasks=a.tasks, steps=a.steps, seed=a.seed,
                      progress=not a.quiet, chunk=a.chunk or 250)
    c = curves[next(iter(curves))]
    mean, ci = c.mean(), c.ci95()
    print(f"{method.config.label} on {family.name}: test {c.metric} over {c.n} held-out tasks")
    print(f"{'step':>5}  {'mean':>10}  {'ci95':>8}")
    for k in range(len(mean)):
        print(f"{k:>5}  {float(mean[k]):>10.4f}  {float(ci[k]):>8.4f}")
    for line in pretrained.comparison(extra, c.metric, mean, ci, a.tasks, a.steps, a.seed):
        print(line)
    if a.json:  # the shared results.json schema, so `python -m lft.pretrained add` reads it
        rows = []
        for metric, curve in curves.items():
            per_step = queries_per_step(method.config.oracle, _examples(family))
            rows += [{**row, "queries": row["step"] * per_step} for row in curve_rows(
                curve, method.config.name, method.config.oracle_kind,
                _source(method_family_config), _source(family.config()))]
        config = {"checkpoint": str(a.checkpoint), "method": method.config.to_dict(),
                  "family": family.config(), "tasks": a.tasks, "steps": a.steps,
                  "chunk": a.chunk or 250}
        write_json(a.json, results_document("evaluate", "evaluate", a.seed, started,
                                            time.perf_counter() - t0, config, rows))
    return 0


def _examples(family) -> int:
    """Fine-tuning examples per task (a first-order step back-propagates them all)."""
    cfg = family.config()
    if cfg.get("task") == "mixture":
        return max(_examples_of(f) for f in cfg["families"])
    return _examples_of(cfg)


def _examples_of(cfg: dict) -> int:
    ways = 1 if cfg.get("task") == "sine" else int(cfg.get("ways", 2))
    return int(cfg.get("shots", 10)) * ways


def _source(config: dict) -> str:
    """``mnist``, ``cifar10``, ``mnist+cifar10``, ``sine``...: the image sources of a family
    configuration (mixtures joined by ``+``), else its task kind."""
    if config.get("families"):
        return "+".join(_source(f) for f in config["families"])
    return config.get("source", config.get("task", "unknown"))


def cmd_reproduce(a) -> int:
    import importlib

    from lft.experiments.results import default_out

    module = importlib.import_module(f"lft.experiments.{a.artefact.replace('-', '_')}")
    out = Path(a.out or default_out(a.artefact, a.profile))
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a folder for the results")
    kwargs = {"data_dir": a.data_dir} if a.artefact != "figure4" else {}
    existed = out.exists()
    try:
        doc = module.reproduce(profile=a.profile, out=out, seed=a.seed, workers=a.workers,
                               progress=not a.quiet, resume=a.resume, **kwargs)
    except (UserError, ValueError, OSError):
        if not existed and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a folder this run created and never wrote to: leave nothing behind
        raise
    written = sorted(p.name for p in out.iterdir() if p.suffix in (".json", ".md", ".png"))
    for name in written:
        if name.endswith(".md"):
            print((out / name).read_text())
    print(f"wrote {', '.join(str(out / n) for n in written)} "
          f"in {doc['wall_time_s'] / 60:.1f} min")
    return 0


def _small_job(a) -> bool:
    """Whether the command works on sine-sized tensors, where one thread is fastest."""
    if a.command == "reproduce":
        return a.artefact == "figure4"
    return (getattr(a, "task", None) or "") == "sine"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    from lft.perf import configure_allocator, configure_threads

    configure_allocator()
    handlers = {"train": cmd_train, "evaluate": cmd_evaluate, "reproduce": cmd_reproduce,
                "data": cmd_data}
    from lft.meta.distributed import DistributedError

    try:
        if a.command in ("train", "evaluate", "reproduce"):
            configure_threads(a.threads, small=_small_job(a))
        handler = getattr(a, "handler", None) or handlers[a.command]
        return handler(a)
    except (UserError, ValueError) as e:  # incl. DataError, CheckpointError
        print(f"lft: error: {one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # a path that cannot be read or written: name it
        where = f": {e.filename}" if e.filename else ""
        print(f"lft: error: {one_line(e.strerror or e)}{where}", file=sys.stderr)
        return 2
    except DistributedError as e:  # another rank failed: not a user error (status 1)
        print(f"lft: error: {one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lft: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
