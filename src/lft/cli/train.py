"""``lft train``: meta-train a method on a task family, resumably (rank 0 writes the run)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lft.cli.common import UserError, add_source, add_threads, source_family
from lft.meta.learners import METHODS
from lft.oracles import ESTIMATORS, at_budget
from lft.tasks.presets import SOURCE_TASKS, TASKS
from lft.validation import positive_arg


def register(sub) -> None:
    """Add ``train`` to the ``lft`` sub-command parsers."""
    t = sub.add_parser("train", help="meta-train a method on a task family")
    t.add_argument("--task", default="sine", choices=TASKS + SOURCE_TASKS,
                   help="task family: sine (no data), mnist (MLP), cifar10 (Conv-4) or "
                        "mnist+cifar10 (incongruous mix); 2-way 5-shot for images; uap-SOURCE: "
                        "universal perturbations against the LeNet-5 victim (Table 1); "
                        "classification: your own images (--source PATH --model M)")
    add_source(t)
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
    t.add_argument("--iterations", type=positive_arg(int), default=None,
                   help="meta-iterations (default 1000)")
    t.add_argument("--meta-batch", type=positive_arg(int), default=None,
                   help="tasks per meta-iteration (default 8; MAML 25)")
    t.add_argument("--meta-lr", type=positive_arg(float), default=None,
                   help="Adam meta-learning rate (default 3e-3; MAML 1e-3)")
    t.add_argument("--lr-decay", type=positive_arg(float), default=None,
                   help="final meta-lr as a fraction of the first (cosine schedule; default 0.1)")
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
    t.add_argument("--log", choices=("jsonl", "tensorboard"), default="jsonl",
                   help="where the meta-loss curve goes besides the progress bar: jsonl (the "
                        "default: RUN/metrics.jsonl, always written) or tensorboard (also event "
                        "files in RUN/tensorboard; needs `pip install tensorboard`)")
    t.add_argument("--quiet", action="store_true")
    add_threads(t)
    t.set_defaults(handler=cmd_train)


def cmd_train(a) -> int:
    """``lft train``: build the method and family from the options, then meta-train."""
    from lft.meta import TrainConfig, preset
    from lft.meta.distributed import DistributedError, from_env
    from lft.meta.learners import RESIDUAL, contains_rule, with_lstm_options
    from lft.tasks import named_family
    from lft.tasks.presets import RULE_DEFAULTS

    if a.log == "tensorboard":  # before anything is built or written
        from lft.meta.loggers import TensorboardUnavailable, require_tensorboard
        try:
            require_tensorboard()
        except TensorboardUnavailable as e:
            raise UserError(str(e)) from None
    family = source_family(a) or named_family(a.task, a.data_dir)
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
        tcfg = TrainConfig.for_method(name, iterations=a.iterations, meta_batch=a.meta_batch,
                                      meta_lr=a.meta_lr, seed=a.seed, lr_decay=a.lr_decay,
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
    from lft.meta import MetaTrainer, Method

    main = replicas.is_main
    run = runs.Run.folder(out, is_main=main, tensorboard=a.log == "tensorboard")
    path, log = run.checkpoint, run.log
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
    # the run folder is made only once every check has passed
    trainer = MetaTrainer(method, family, tcfg, replicas=replicas)
    config = runs.run_config(trainer, init_from=a.init_from)
    start = run.start(trainer, config, resuming=a.resume)
    if a.resume and main:
        if start >= tcfg.iterations:
            print(f"{cfg.label}: the run in {out} is already complete "
                  f"({start} meta-iterations); checkpoint: {path}")
        else:
            print(f"resuming {cfg.label} at meta-iteration {start} of {tcfg.iterations} "
                  f"from {path}")
    if start >= tcfg.iterations:
        return 0
    with runs.StopOnSignal(announce=main) as stop:
        run.train(trainer, config, progress=not a.quiet, save_every=a.checkpoint_every,
                  stop=stop)
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
        if run.tensorboard is not None:
            print(f"tensorboard: {run.tensorboard} (tensorboard --logdir {run.tensorboard})")
    return 0
