"""Does weighting the meta-loss toward the last step lift lft+sgd above tuned projected SGD at
20 steps on CIFAR-10 UAPs?

In ``results/uap-rivals-paper-kappa`` (rivals bracketed by their tuning grids) the residual
``lft+sgd``, meta-trained with every step's validation loss weighted alike, led tuned projected
SGD by 4.5 points after 5 steps on CIFAR-10, tied at 10 and trailed by 1.0-1.1 at 20, the step
the table compares. This probe meta-trains it as that run did (its eps, kappa and SGD step
size; 200 meta-iterations of 8 tasks; ``--seed``) with the step weightings ``uniform``,
``linear`` and ``final``, and compares each, paired, with projected SGD at the run's tuned
step size on ``--tasks`` tasks from **meta-training** images (the ``select`` stream, which
neither meta-training nor testing reads). No test task is read.

    python probes/uap_weighting.py --data-dir ../shared/data     # ~15 min on one core
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lft.experiments.uap_rivals_spec import UAPRivalsProfile, uap_config
from lft.meta import MetaTrainer, Method, TrainConfig, evaluate, preset
from lft.tasks import build_family

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "results" / "uap-rivals-paper-kappa" / "results.json"
STEPS = (5, 10, 20)


def curve(method, family, tasks):
    return evaluate(method, family, n_tasks=tasks, steps=max(STEPS), purpose="select",
                    progress=False, record=[0, *STEPS])["asr"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--source", default="cifar10", choices=["mnist", "cifar10"])
    p.add_argument("--tasks", type=int, default=300)
    p.add_argument("--iterations", type=int, default=None,
                   help="meta-iterations (default: the run's, 200)")
    p.add_argument("--weightings", default="uniform,linear,final")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = json.loads(RUN.read_text())["config"]
    prof = UAPRivalsProfile.from_dict(cfg["profile"])
    eps, lr = cfg["eps"][a.source], cfg["tuning"][a.source]["rules"]["sgd"]["lr"]
    family = build_family(uap_config(a.source, prof, a.data_dir, eps))
    rival = curve(Method(preset("sgd", base_lr=lr, horizon=prof.steps), family), family,
                  a.tasks)
    print(f"{a.source}, eps {eps:g}, kappa {prof.kappa:g}, {a.tasks} meta-training (select) "
          f"tasks; projected SGD lr {lr:g}: " + ", ".join(
              f"k={k}: {100 * float(rival.mean()[i + 1]):.1f}%" for i, k in enumerate(STEPS)),
          flush=True)
    for weighting in a.weightings.split(","):
        method_cfg = preset("lft+sgd", base_lr=lr, horizon=prof.steps,
                            truncation=prof.truncation)
        method_cfg.weighting = weighting
        method_cfg.validate()
        train = TrainConfig(iterations=a.iterations or prof.iterations["residual"],
                            meta_batch=prof.meta_batch, meta_lr=prof.meta_lr["residual"],
                            clip=1.0, lr_decay=prof.lr_decay, seed=a.seed, log_every=1000)
        method = Method(method_cfg, family, seed=a.seed)
        t0 = time.perf_counter()
        MetaTrainer(method, family, train).train(progress=False)
        asr = curve(method, family, a.tasks)
        diff = type(asr)("d", asr.values - rival.values, asr.steps)
        cells = [f"k={k}: {100 * float(asr.mean()[i + 1]):.1f}% "
                 f"({100 * float(diff.mean()[i + 1]):+.1f} ± {100 * float(diff.ci95()[i + 1]):.1f})"
                 for i, k in enumerate(STEPS)]
        print(f"  lft+sgd, weighting {weighting} ({(time.perf_counter() - t0) / 60:.1f} min): "
              + "; ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
