"""``lft attack --source PATH``: few-shot UAP tasks on a user's image source, one perturbation
per task, reported as held-out attack success rate with its 95% CI, distortion and queries.

The tasks are :class:`lft.tasks.UAPFamily`'s (meta-test part; only images the victim
classifies correctly) and the loop is the engine's (:func:`lft.attacks.tasks.attack_tasks`,
which calls :func:`lft.meta.evaluate`); this module only reads the options and prints.
"""

from __future__ import annotations

from pathlib import Path

from lft.cli.common import UserError

#: options of the single-perturbation attack that --source does not use
IMAGES_ONLY = ("classes", "eval_dir", "black_box")


def cmd_attack_source(a, lam: float, eps: float | None, norm: str, make_method,
                      kappa: float = 0.0) -> int:
    """Evaluate ``--tasks`` UAP tasks of ``--source`` against ``--victim``; save the deltas.

    ``make_method(a, perturbation)`` builds the fine-tuning method from the options, as the
    single attack does (``--fine-tuner`` or ``--rule``); ``kappa``: the loss's C&W
    confidence."""
    from lft.attacks.attack import load_attack_victim
    from lft.attacks.tasks import attack_tasks, save_deltas
    from lft.perf import configure_threads
    from lft.reporting import write_json
    from lft.tasks.uap import Perturbation, UAPFamily

    used = [f"--{k.replace('_', '-')}" for k in IMAGES_ONLY if getattr(a, k)]
    if used:
        raise UserError(f"{', '.join(used)} belong to the single attack of --images; --source "
                        "evaluates few-shot tasks (white box)")
    steps = a.steps or 20
    out = Path(a.out)
    file = out if out.suffix == ".safetensors" else out / "deltas.safetensors"
    if file.exists() and file.is_dir():
        raise UserError(f"--out {file} is a folder; pass a .safetensors file name")
    configure_threads(small=True)
    victim = load_attack_victim(a.victim)
    family = UAPFamily(source=a.source, victim=victim, lam=lam, ways=a.ways, shots=a.shots,
                       queries=a.queries, init_scale=a.init_scale, part="meta-test",
                       data_dir=None, eps=eps, norm=norm, kappa=kappa)
    method, how = make_method(a, Perturbation(victim, family.model.shape))
    budget = "no budget" if eps is None else f"budget ||delta||_{norm} <= {eps:g}"
    print(f"victim {victim.name}; {a.tasks} tasks of {family.name} ({a.ways} classes, "
          f"{a.shots} fine-tuning and {a.queries} held-out images per class, all classified "
          f"correctly), images {'x'.join(map(str, family.model.shape))}; fine-tuner {how}; "
          f"lambda {lam:g}; kappa {kappa:g}; {budget}; {steps} steps")
    r = attack_tasks(method, family, a.tasks, steps, a.seed, progress=not a.quiet)
    asr, dist = r.curves["asr"], r.curves["distortion"]
    mean, ci, d_mean, d_ci = asr.mean(), asr.ci95(), dist.mean(), dist.ci95()
    if not a.quiet:
        every = max(1, steps // 10)
        for k in range(0, steps + 1):
            if k % every == 0 or k == steps:
                print(f"  step {k:>4}: held-out ASR {float(mean[k]):.2%} +- {float(ci[k]):.2%}"
                      f"  distortion {float(d_mean[k]):.4f}")
    what = ("loss evaluations of the fine-tuning images" if r.zeroth_order
            else "victim images back-propagated")
    print(f"held-out ASR {float(mean[-1]):.2%} +- {float(ci[-1]):.2%} (95% CI, {asr.n} tasks); "
          f"distortion ||delta||_2/sqrt(d) {float(d_mean[-1]):.4f} +- {float(d_ci[-1]):.4f}; "
          f"queries {r.queries} {what} per task")
    record = {"victim": a.victim, "source": a.source, "fine_tuner": how, "tasks": a.tasks,
              "steps": steps, "seed": a.seed, "lam": lam, "kappa": kappa, "eps": eps,
              "norm": None if eps is None else norm, "ways": a.ways, "shots": a.shots,
              "queries": a.queries, "family": family.config(),
              "asr": [float(v) for v in mean], "asr_ci95": [float(v) for v in ci],
              "distortion": [float(v) for v in d_mean], "queries_per_task": r.queries}
    save_deltas(file, r.deltas, record)
    write_json(file.with_suffix(".json"), record)
    print(f"wrote {file} ({len(r.deltas)} perturbations) and {file.with_suffix('.json')}")
    return 0
