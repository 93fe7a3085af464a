"""Does longer meta-training widen black-box ZO-LFT+SGD's margin over ZO-SGD on the same
fitted subspace (MNIST UAPs)?

In ``results/uap-rivals-black-box-subspace`` the residual rule, meta-trained 60 iterations,
tied ZO-SGD on the same subspace on MNIST (+0.3 +- 0.4 at 20 steps). This probe meta-trains it
for 60 and 200 iterations (meta-seed 0, the profile's other settings) on the committed MNIST
basis (fitted on meta-training tasks) and compares it, paired, with ZO-SGD at the step sizes
the run tuned (3 for 5 and 10 steps, 1 for 20) on ``--tasks`` tasks from **meta-training**
images (the ``select`` stream). No test task is read.

    python probes/zo_subspace_residual.py --data-dir ../shared/data     # ~15 min
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from lft.experiments.uap_rivals_spec import PROFILES, uap_config
from lft.meta import MetaTrainer, Method, TrainConfig, evaluate, preset
from lft.oracles import at_budget
from lft.tasks import build_family

ROOT = Path(__file__).resolve().parents[1]
BASIS = ROOT / "results" / "uap-rivals-black-box-subspace" / "bases" / "mnist.safetensors"
STEPS = (5, 10, 20)
RIVAL_LR = {5: 3.0, 10: 3.0, 20: 1.0}


def curve(method, family, tasks):
    return evaluate(method, family, n_tasks=tasks, steps=max(STEPS), purpose="select",
                    progress=False, record=[0, *STEPS])["asr"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--tasks", type=int, default=300)
    p.add_argument("--iterations", default="60,200")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    prof = PROFILES["black-box-subspace"]
    family = build_family(uap_config("mnist", prof, a.data_dir, 6.0))
    oracle = at_budget("subspace", 21, basis=str(BASIS))
    rivals = {}
    for lr in sorted(set(RIVAL_LR.values())):
        cfg = preset("sgd", zo=True, base_lr=lr, horizon=prof.steps, oracle=oracle)
        rivals[lr] = curve(Method(cfg, family), family, a.tasks)
    print(f"mnist, eps 6, {a.tasks} meta-training (select) tasks, 21 loss evaluations per step; "
          "ZO-SGD [subspace]: " + ", ".join(
              f"k={k}: {100 * float(rivals[lr].mean()[i + 1]):.1f}% (lr {lr:g})"
              for i, (k, lr) in enumerate(RIVAL_LR.items())), flush=True)
    bb = prof.black_box
    for iterations in [int(x) for x in a.iterations.split(",")]:
        cfg = preset("lft+sgd", zo=True, base_lr=1.0, horizon=prof.steps,
                     truncation=prof.truncation, oracle=oracle)
        train = TrainConfig(iterations=iterations, meta_batch=bb["meta_batch"],
                            meta_lr=bb["meta_lr"], clip=1.0, lr_decay=prof.lr_decay, seed=0,
                            log_every=1000)
        method = Method(cfg, family, seed=0)
        t0 = time.perf_counter()
        MetaTrainer(method, family, train).train(progress=False)
        asr = curve(method, family, a.tasks)
        cells = []
        for i, (k, lr) in enumerate(RIVAL_LR.items()):
            diff = type(asr)("d", asr.values - rivals[lr].values, asr.steps)
            cells.append(f"k={k}: {100 * float(asr.mean()[i + 1]):.1f}% "
                         f"({100 * float(diff.mean()[i + 1]):+.1f} ± "
                         f"{100 * float(diff.ci95()[i + 1]):.1f})")
        print(f"  lft+sgd, {iterations} it ({(time.perf_counter() - t0) / 60:.1f} min): "
              + "; ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
