"""``lft evaluate``: the per-step test curve of a checkpoint or a packaged fine-tuner."""

from __future__ import annotations

from pathlib import Path

from lft.cli.common import UserError, add_source, add_threads, source_family
from lft.oracles import queries_per_step
from lft.tasks.presets import SOURCE_TASKS, TASKS
from lft.validation import positive_arg


def register(sub) -> None:
    """Add ``evaluate`` to the ``lft`` sub-command parsers."""
    e = sub.add_parser("evaluate", help="per-step test curve of a checkpoint")
    e.add_argument("checkpoint", help="a checkpoint file or a pretrained fine-tuner's name "
                   "(python -m lft.pretrained list); a name also shows the figures it reported")
    e.add_argument("--tasks", type=positive_arg(int), default=500)
    e.add_argument("--steps", type=positive_arg(int), default=20)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--task", default=None, choices=TASKS + SOURCE_TASKS,
                   help="test on this named family instead of the checkpoint's own (e.g. a "
                        "fine-tuner meta-trained on the mix, tested on cifar10); "
                        "classification: on your own images (--source PATH --model M)")
    add_source(e, shots=True)
    e.add_argument("--data-dir", default=None,
                   help="image data folder (default: the checkpoint's, else $LFT_DATA_DIR)")
    e.add_argument("--chunk", type=positive_arg(int), default=None,
                   help="test tasks run at once (default 250; Table 2 used 10; it selects "
                        "which tasks are drawn)")
    e.add_argument("--json", default=None, help="also write the rows to this JSON file")
    e.add_argument("--quiet", action="store_true")
    add_threads(e)
    e.set_defaults(handler=cmd_evaluate)


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
    """``lft evaluate``: test a checkpoint on held-out tasks; print (and save) the curve."""
    import time

    from lft import checkpoint, pretrained
    from lft.experiments.results import curve_rows, results_document, utc_now, write_json
    from lft.meta import evaluate
    from lft.perf import configure_threads

    if a.json and Path(a.json).is_dir():
        raise UserError(f"--json {a.json} is a folder; pass a file name such as rows.json")
    path = pretrained.resolve(a.checkpoint)
    own = source_family(a, uap=_uap_settings(checkpoint.read(path)[1]["family"])
                        if a.task == "uap" else None)
    method, family, extra = checkpoint.load(path, a.data_dir, family=own)
    method_family_config = family.config() if own is None else checkpoint.read(path)[1]["family"]
    if a.task and own is None:
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
    reported = [] if own is not None else pretrained.comparison(extra, c.metric, mean, ci,
                                                                a.tasks, a.steps, a.seed)
    for line in reported:  # the figures a packaged fine-tuner reported on its own tasks
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
