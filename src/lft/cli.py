"""The ``lft`` command line: train, evaluate, reproduce.

User errors (bad options, missing files) print one line ``lft: error: ...`` and exit with
status 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from lft.meta.learners import METHODS
from lft.tasks.presets import TASKS

ARTEFACTS = ("figure4",)
#: Modules that add their own sub-commands: each defines ``register(subparsers)``, which adds
#: a parser and sets its ``handler`` default to a function ``(args) -> exit status``.
COMMAND_MODULES: tuple[str, ...] = ()


class UserError(Exception):
    """A problem with what the user asked for; reported without a traceback."""


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lft", description="Learned fine-tuners for few-shot "
                                "learning: meta-train, evaluate, reproduce the paper.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="meta-train a method on a task family")
    t.add_argument("--task", default="sine", choices=TASKS,
                   help="task family: sine (no data), mnist (MLP), cifar10 (Conv-4) or "
                        "mnist+cifar10 (incongruous mix); 2-way 5-shot for images")
    t.add_argument("--data-dir", default=None,
                   help="image data folder (default $LFT_DATA_DIR, else the user cache folder)")
    t.add_argument("--method", default="lft", choices=[m for m in METHODS
                                                       if m not in ("sgd", "adam", "signsgd")])
    t.add_argument("--zo", action="store_true", help="zeroth-order oracle (function values only)")
    t.add_argument("--learn-init", action="store_true",
                   help="also meta-learn the initial optimisee (congruous tasks only)")
    t.add_argument("--iterations", type=_positive(int), default=1000)
    t.add_argument("--meta-batch", type=_positive(int), default=None,
                   help="tasks per meta-iteration (default 8; MAML 25)")
    t.add_argument("--meta-lr", type=_positive(float), default=None,
                   help="Adam meta-learning rate (default 3e-3; MAML 1e-3)")
    t.add_argument("--lr-decay", type=_positive(float), default=0.1,
                   help="final meta-lr as a fraction of the first (cosine schedule)")
    t.add_argument("--horizon", type=_positive(int), default=None,
                   help="unrolled fine-tuning steps per episode (default 20; MAML 1)")
    t.add_argument("--truncation", type=_positive(int), default=None,
                   help="truncated-BPTT window in steps (default: the whole horizon)")
    t.add_argument("--weighting", choices=("uniform", "linear", "final"), default=None)
    t.add_argument("--second-order", action="store_true",
                   help="keep the Hessian term of the meta-gradient (first-order oracle)")
    t.add_argument("--first-order", action="store_true",
                   help="drop the Hessian term (first-order MAML; the default for LFT/L2O)")
    t.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                   help="start a learned initialisation from this checkpoint's (e.g. MAML's)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default=None, help="output folder (default runs/TASK-METHOD)")
    t.add_argument("--quiet", action="store_true")

    e = sub.add_parser("evaluate", help="per-step test curve of a checkpoint")
    e.add_argument("checkpoint")
    e.add_argument("--tasks", type=_positive(int), default=500)
    e.add_argument("--steps", type=_positive(int), default=20)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--json", default=None, help="also write the rows to this JSON file")
    e.add_argument("--quiet", action="store_true")

    r = sub.add_parser("reproduce", help="reproduce a figure or table of the paper")
    r.add_argument("artefact", choices=ARTEFACTS)
    r.add_argument("--profile", default="quick", choices=("quick", "paper"))
    r.add_argument("--out", default=None, help="output folder (default results/ARTEFACT)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--workers", type=_positive(int), default=None,
                   help="parallel processes (default: the profile's, at most the cores)")
    r.add_argument("--quiet", action="store_true")
    d = sub.add_parser("data", help="image data sets: download or check them")
    d.add_argument("action", choices=("download", "check"))
    d.add_argument("name", choices=("mnist", "cifar10"))
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
    from lft import checkpoint
    from lft.meta import MetaTrainer, Method, TrainConfig, jsonl_logger, preset
    from lft.tasks import named_family

    family = named_family(a.task, a.data_dir)
    name = "lft+init" if (a.method == "lft" and a.learn_init) else a.method
    overrides = {}
    if a.horizon:
        overrides["horizon"] = a.horizon
    if a.truncation:
        overrides["truncation"] = a.truncation
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
    cfg = preset(name, zo=a.zo, **overrides)
    mb = a.meta_batch or (25 if name == "maml" else 8)
    lr = a.meta_lr or (1e-3 if name == "maml" else 3e-3)
    tcfg = TrainConfig(iterations=a.iterations, meta_batch=mb, meta_lr=lr, seed=a.seed,
                       lr_decay=a.lr_decay)
    out = Path(a.out or f"runs/{a.task}-{cfg.label.lower().replace('+', '-plus-')}")
    out.mkdir(parents=True, exist_ok=True)
    method = Method(cfg, family, seed=a.seed)
    if a.init_from:
        from lft.experiments.runner import warm_start_init
        warm_start_init(method, a.init_from)
    log = out / "metrics.jsonl"
    log.unlink(missing_ok=True)
    trainer = MetaTrainer(method, family, tcfg, log=jsonl_logger(log))
    trainer.train(progress=not a.quiet)
    path = checkpoint.save(out / "checkpoint.safetensors", method, family,
                           extra={"train": tcfg.__dict__, "stats": trainer.stats.__dict__})
    (out / "config.json").write_text(json.dumps({"method": cfg.to_dict(), "train": tcfg.__dict__,
                                                 "family": family.config()}, indent=1))
    s = trainer.stats
    print(f"{cfg.label}: {s.iterations} meta-iterations in {s.wall_time_s:.0f}s "
          f"({s.skipped_nonfinite} non-finite meta-gradients skipped)")
    print(f"checkpoint: {path}\nmetrics log: {log}")
    return 0


def cmd_evaluate(a) -> int:
    from lft import checkpoint
    from lft.experiments.results import curve_rows, write_json
    from lft.meta import evaluate

    method, family, _ = checkpoint.load(a.checkpoint)
    curves = evaluate(method, family, n_tasks=a.tasks, steps=a.steps, seed=a.seed,
                      progress=not a.quiet)
    c = curves[next(iter(curves))]
    mean, ci = c.mean(), c.ci95()
    print(f"{method.config.label} on {family.name}: test {c.metric} over {c.n} held-out tasks")
    print(f"{'step':>5}  {'mean':>10}  {'ci95':>8}")
    for k in range(len(mean)):
        print(f"{k:>5}  {float(mean[k]):>10.4f}  {float(ci[k]):>8.4f}")
    if a.json:
        rows = curve_rows(c, method.config.name, method.config.oracle_kind, family.name,
                          family.name)
        write_json(a.json, {"checkpoint": str(a.checkpoint), "rows": rows})
    return 0


def cmd_reproduce(a) -> int:
    from lft.experiments import figure4

    out = Path(a.out or f"results/{a.artefact}")
    doc = figure4.reproduce(profile=a.profile, out=out, seed=a.seed, workers=a.workers,
                            progress=not a.quiet)
    print((out / "table.md").read_text())
    print(f"wrote {out / 'results.json'}, {out / 'table.md'}, {out / 'figure4.png'} "
          f"in {doc['wall_time_s'] / 60:.1f} min")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    handlers = {"train": cmd_train, "evaluate": cmd_evaluate, "reproduce": cmd_reproduce,
                "data": cmd_data}
    try:
        handler = getattr(a, "handler", None) or handlers[a.command]
        return handler(a)
    except (UserError, ValueError, FileNotFoundError) as e:
        print(f"lft: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lft: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
