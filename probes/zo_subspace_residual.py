"""Does longer meta-training, or a step weighting of the meta-loss, widen black-box
ZO-LFT+SGD's margin over ZO-SGD on the same fitted subspace?

In ``results/uap-rivals-black-box-subspace`` the residual rule, meta-trained 60 iterations,
tied ZO-SGD on the same subspace on MNIST (+0.3 +- 0.4 at 20 steps). This probe meta-trains it
for 60 and 200 iterations (meta-seed 0, the profile's other settings) on the committed MNIST
basis (fitted on meta-training tasks) and compares it, paired, with ZO-SGD at the step sizes
the committed run tuned for 5, 10 and 20 steps, on ``--tasks`` tasks from **meta-training**
images (the ``select`` stream). No test task is read. ``--weightings`` meta-trains one rule per
step weighting (``uniform``, ``linear``, ``final``, or ``budgets``: weight 1 at steps 5, 10 and
20 only, the steps the table reports), at ``--iterations``.

    python probes/zo_subspace_residual.py --data-dir ../shared/data     # ~15 min
    python probes/zo_subspace_residual.py --data-dir ../shared/data --source cifar10 \
        --iterations 200 --weightings uniform,budgets
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lft.experiments.uap_rivals_spec import PROFILES, uap_config
from lft.meta import MetaTrainer, Method, TrainConfig, evaluate, preset
from lft.oracles import at_budget
from lft.tasks import build_family

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "results" / "uap-rivals-black-box-subspace"
STEPS = (5, 10, 20)


def weights(name: str) -> str | list[float]:
    """A step weighting by name: a built-in one, or ``budgets`` (1 at the reported steps)."""
    if name != "budgets":
        return name
    return [1.0 if k + 1 in STEPS else 0.0 for k in range(max(STEPS))]


def curve(method, family, tasks):
    return evaluate(method, family, n_tasks=tasks, steps=max(STEPS), purpose="select",
                    progress=False, record=[0, *STEPS])["asr"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--tasks", type=int, default=300)
    p.add_argument("--iterations", default="60,200")
    p.add_argument("--source", default="mnist", choices=("mnist", "cifar10"))
    p.add_argument("--weightings", default="uniform")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    prof = PROFILES["black-box-subspace"]
    config = json.loads((RUN / "results.json").read_text())["config"]
    eps = config["eps"][a.source]
    rival_lr = {k: config["zo_rivals"][a.source]["sgd/subspace"]["best"][str(k)] for k in STEPS}
    family = build_family(uap_config(a.source, prof, a.data_dir, eps))
    oracle = at_budget("subspace", 21, basis=str(RUN / "bases" / f"{a.source}.safetensors"))
    rivals = {}
    for lr in sorted(set(rival_lr.values())):
        cfg = preset("sgd", zo=True, base_lr=lr, horizon=prof.steps, oracle=oracle)
        rivals[lr] = curve(Method(cfg, family), family, a.tasks)
    print(f"{a.source}, eps {eps:g}, {a.tasks} meta-training (select) tasks, 21 loss evaluations "
          "per step; ZO-SGD [subspace]: " + ", ".join(
              f"k={k}: {100 * float(rivals[lr].mean()[i + 1]):.1f}% (lr {lr:g})"
              for i, (k, lr) in enumerate(rival_lr.items())), flush=True)
    bb = prof.black_box
    for iterations, weighting in [(int(i), w) for i in a.iterations.split(",")
                                  for w in a.weightings.split(",")]:
        cfg = preset("lft+sgd", zo=True, base_lr=rival_lr[max(STEPS)], horizon=prof.steps,
                     truncation=prof.truncation, oracle=oracle)
        cfg.weighting = weights(weighting)
        cfg.validate()
        train = TrainConfig(iterations=iterations, meta_batch=bb["meta_batch"],
                            meta_lr=bb["meta_lr"], clip=1.0, lr_decay=prof.lr_decay, seed=0,
                            log_every=1000)
        method = Method(cfg, family, seed=0)
        t0 = time.perf_counter()
        MetaTrainer(method, family, train).train(progress=False)
        asr = curve(method, family, a.tasks)
        cells = []
        for i, (k, lr) in enumerate(rival_lr.items()):
            diff = type(asr)("d", asr.values - rivals[lr].values, asr.steps)
            cells.append(f"k={k}: {100 * float(asr.mean()[i + 1]):.1f}% "
                         f"({100 * float(diff.mean()[i + 1]):+.1f} ± "
                         f"{100 * float(diff.ci95()[i + 1]):.1f})")
        minutes = (time.perf_counter() - t0) / 60
        print(f"  lft+sgd, {weighting}, {iterations} it ({minutes:.1f} min): "
              + "; ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
