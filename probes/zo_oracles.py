"""Which zeroth-order oracle spends 21 loss evaluations per step best on few-shot sine tasks?

Every oracle here costs 20 directions plus the base point per step (forward differences). For
each, ZO-Adam and ZO-signSGD get their learning rate tuned for step 20 on meta-training tasks
(:func:`lft.meta.evaluate.tune_per_budget`), and are then run on ``--tasks`` other
meta-training tasks (the ``select`` stream, which neither meta-training, tuning nor testing
reads). The probe prints the mean cosine of each estimate with the true gradient along the
ZO-Adam path, and the MSE at steps 5, 10 and 20 (± 95% CI), beside first-order Adam. The
``figure4`` and ``uap-rivals`` artefacts adopt the oracle this output favours; nothing here
reads a test task.

    python probes/zo_oracles.py            # ~3 min on 2 cores
"""

from __future__ import annotations

import argparse

import torch

from lft.meta import Method, evaluate, preset
from lft.meta.evaluate import tune_per_budget
from lft.oracles import build_oracle, cosine, plain_grad
from lft.seeding import generator as make_generator
from lft.tasks import SineFamily

STEPS = (5, 10, 20)
RULES = ("sgd", "adam", "signsgd")
GRID = [0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3]
ORACLES = {
    "gaussian": {"type": "zo", "q": 20, "directions": "gaussian", "scheme": "forward"},
    "orthogonal": {"type": "zo", "q": 20, "directions": "orthogonal", "scheme": "forward"},
    "guided k=2": {"type": "guided", "q": 20, "k": 2, "alpha": 0.5},
    "history m=1": {"type": "history", "q": 20, "m": 1},
    "history m=3": {"type": "history", "q": 20, "m": 3},
    "history m=5": {"type": "history", "q": 20, "m": 5},
}


def path_cosine(method: Method, family, n: int) -> float:
    """Mean cosine of the oracle's estimate with the gradient along ``method``'s own path."""
    gen = make_generator(0, "select-cosine")
    tasks = family.sample(n, gen)
    theta, state = method.start(tasks, gen)
    memory, cos = None, []

    def loss_fn(th):
        return tasks.loss(th, "train")

    with torch.no_grad():
        for _ in range(max(STEPS)):
            est, memory = method.oracle.estimate(loss_fn, theta, gen, memory)
            cos.append(cosine(est, plain_grad(loss_fn, theta)).mean())
            delta, state = method.rule.update(est, state, theta)
            theta = theta + delta
    return float(torch.stack(cos).mean())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", type=int, default=300)
    p.add_argument("--tune-tasks", type=int, default=100)
    p.add_argument("--oracles", default=",".join(ORACLES))
    a = p.parse_args(argv)
    torch.set_num_threads(2)
    family = SineFamily()
    record = [0, *STEPS]

    def run(rule: str, oracle: dict | None) -> str:
        cfg = preset(rule, zo=oracle is not None, horizon=max(STEPS))
        if oracle is not None:
            cfg.oracle = dict(oracle)
            build_oracle(dict(oracle))
        best, _ = tune_per_budget(cfg, family, GRID, [max(STEPS)], n_tasks=a.tune_tasks)
        cfg.rule = {**cfg.rule, "lr": best[max(STEPS)]}
        method = Method(cfg, family)
        mse = evaluate(method, family, n_tasks=a.tasks, steps=max(STEPS), purpose="select",
                       progress=False, record=record)["mse"]
        cells = " / ".join(f"{float(mse.mean()[i + 1]):.2f} ± {float(mse.ci95()[i + 1]):.2f}"
                           for i in range(len(STEPS)))
        cos = f"cos {path_cosine(method, family, 100):.3f}" if oracle is not None else ""
        return f"{rule:8s} lr {best[max(STEPS)]:<6g} MSE {cells}  {cos}"

    print(f"sine, {a.tasks} meta-training (select) tasks, MSE at steps {STEPS}; 21 loss "
          "evaluations per step for every zeroth-order oracle", flush=True)
    print(f"  first-order: {run('adam', None)}", flush=True)
    for name in a.oracles.split(","):
        for rule in RULES:
            print(f"  {name:12s} {run(rule, ORACLES[name])}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
