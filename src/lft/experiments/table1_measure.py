"""Price and re-measure Table 1's jobs (a command-line tool over :mod:`table1_costs`).

    python -m lft.experiments.table1_measure [PROFILE]        # every job's estimate (seconds)
    python -m lft.experiments.table1_measure measure [DATA]   # re-measure the per-step costs
"""

from __future__ import annotations

from lft.experiments.table1_costs import makespan_s


def measure(data_dir: str | None = None, tasks: int = 100, steps: int = 10) -> dict:
    """Re-measure the per-step constants above (CPU seconds of this process, one thread):
    ``python -m lft.experiments.table1_measure measure [DATA_DIR]`` (about 2 CPU-minutes)."""
    import time

    import torch

    from lft.experiments.table1 import PROFILES, uap_config
    from lft.meta.learners import Method, preset
    from lft.meta.trainer import MetaTrainer, TrainConfig
    from lft.meta.unroll import trajectory
    from lft.seeding import generator
    from lft.tasks import build_family

    torch.set_num_threads(1)
    prof, out = PROFILES["paper"], {}
    for source in ("mnist", "cifar10"):
        family = build_family(uap_config(source, prof, data_dir, 0.01)).for_part("meta-test")
        batch = family.sample(tasks, generator(0, "costs"))
        for kind, name in (("hand", "adam"), ("lstm", "lft")):
            method, gen = Method(preset(name), family), generator(0, "costs-run")
            theta, state = method.start(batch, gen)
            with torch.no_grad():
                t0 = time.process_time()
                for theta, state in trajectory(method.rule, method.oracle, batch, theta, state,
                                               steps, gen):
                    pass
                out[f"step_ms/{source}/{kind}"] = (time.process_time() - t0) / tasks / steps * 1e3
        t0 = time.process_time()
        for _ in range(steps):
            batch.metrics(theta)
        out[f"metrics_ms/{source}"] = (time.process_time() - t0) / tasks / steps * 1e3
    for name, train in (("lft", "mnist"), ("l2o", "mnist"), ("lft", "mnist+cifar10"),
                        ("l2o", "mnist+cifar10")):
        family = build_family(uap_config(train, prof, data_dir, 0.01))
        cfg = preset(name, horizon=prof.steps, truncation=prof.truncation)
        trainer = MetaTrainer(Method(cfg, family), family,
                              TrainConfig(iterations=1, meta_batch=prof.meta_batch))
        t0 = time.process_time()
        trainer.train(progress=False)
        out[f"train_iteration_s/{name}/{train}"] = time.process_time() - t0
    return out


def profile_estimate(profile: str = "paper", workers: int | None = None) -> dict:
    """Estimated seconds of every job of ``profile`` and of its two phases on ``workers``
    processes, from the constants above (needs no data: any lambda, any step sizes)."""
    from collections import defaultdict
    from pathlib import Path

    from lft.experiments.results import resolve_profile
    from lft.experiments.table1 import PROFILES, make_jobs, tune_jobs

    prof = resolve_profile(PROFILES, profile)
    workers = workers or prof.workers
    tune = tune_jobs(prof, 0, None)
    jobs = make_jobs(prof, Path("."), 0, None, prof.lams[0], defaultdict(lambda: 0.01))
    return {"jobs_s": {j.label: round(j.estimate_s) for j in tune + jobs},
            "cpu_s": round(sum(j.estimate_s for j in tune + jobs)),
            "tuning_s": round(makespan_s(tune, workers)),
            "table_s": round(makespan_s(jobs, workers)), "workers": workers}


if __name__ == "__main__":
    import json
    import sys

    if sys.argv[1:2] == ["measure"]:
        print(json.dumps(measure(sys.argv[2] if len(sys.argv) > 2 else None), indent=1))
    else:
        print(json.dumps(profile_estimate(sys.argv[1] if len(sys.argv) > 1 else "paper"),
                         indent=1))
