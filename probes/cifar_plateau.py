"""How far can a rule that starts from random weights go on Table 2's CIFAR-10 tasks?

Fine-tunes the Conv-4 of 2-way 5-shot CIFAR-10 tasks drawn from **meta-training** images
(the ``explore`` stream, read by neither meta-training nor testing) for up to 60 steps with
Adam at two learning rates, with per-layer Adam schedules (the last layer only, the first
layer frozen, the last layer's step x10; a role-aware learned rule could learn any of them),
and with the committed CIFAR-10-trained FO-LFT. Prints mean test accuracy at 0/5/10/20/30/40/60
steps: where each levels off bounds what any random-start rule can gain over tuned Adam at the
table's 20 steps.

    python probes/cifar_plateau.py --data-dir ../shared/data          # 12-25 min
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lft import checkpoint
from lft.meta import Method, evaluate, preset
from lft.rules import Adam
from lft.seeding import generator as make_generator
from lft.tasks import ClassificationFamily, as_groups

ROOT = Path(__file__).resolve().parents[1]
RECORD = [0, 5, 10, 20, 30, 40, 60]
#: learning-rate multiplier per parameter role (2 * layer position + is_bias; 0 first layer,
#: 1 middle layers, 2 last layer), on top of Adam's learning rate
SCHEDULES = {"all layers, lr 0.001 (= plain Adam)": (1e-3, [1, 1, 1, 1, 1, 1]),
             "last layer only, lr 0.01": (1e-2, [0, 0, 0, 0, 1, 1]),
             "first layer frozen, lr 0.001": (1e-3, [0, 0, 1, 1, 1, 1]),
             "last layer x10, lr 0.001": (1e-3, [1, 1, 1, 1, 10, 10])}


def per_layer_adam(family, lr: float, scale: list[float], tasks: int) -> torch.Tensor:
    """Mean accuracy at ``RECORD`` of :class:`lft.rules.Adam` with each step multiplied per
    role; the same tasks and random starts as :func:`lft.meta.evaluate` draws for ``explore``
    (chunks of 10), so an all-ones ``scale`` gives plain Adam's curve."""
    task_gen, run_gen = make_generator(0, "explore-tasks"), make_generator(0, "explore-run")
    rule, rows, done = Adam(lr), [], 0
    while done < tasks:
        for batch in as_groups(family.sample(min(10, tasks - done), task_gen)):
            theta = batch.init(run_gen)
            state = rule.init(theta)
            per_coordinate = torch.tensor(scale, dtype=theta.dtype)[batch.roles.long()]
            acc = []
            for k in range(RECORD[-1] + 1):
                if k in RECORD:
                    acc.append(batch.metrics(theta)["accuracy"])
                if k == RECORD[-1]:
                    break
                leaf = theta.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(batch.loss(leaf, "train").sum(), leaf)
                delta, state = rule.update(grad, state)
                theta = theta.detach() + per_coordinate * delta
            rows.append(torch.stack(acc, 1))
        done += min(10, tasks - done)
    return torch.cat(rows).mean(0)


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    """Run the probe; each rule's mean accuracy at ``RECORD``'s steps."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=200)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--checkpoint", default=str(
        ROOT / "results" / "table2" / "checkpoints" / "fo-lft [cifar10].safetensors"))
    a = p.parse_args(argv)
    family = ClassificationFamily("cifar10", "conv4", data_dir=a.data_dir)
    print("steps:", RECORD)

    out: dict[str, list[float]] = {}

    def show(name: str, acc: torch.Tensor) -> None:
        out[name] = [float(x) for x in acc]
        print(f"{name:44s}", " ".join(f"{100 * float(x):5.1f}" for x in acc), flush=True)

    for lr in (1e-3, 5e-4):
        method = Method(preset("adam", rule={"lr": lr}), family)
        show(f"Adam, lr {lr:g}", evaluate(method, family, a.tasks, RECORD[-1], seed=0,
                                          progress=False, purpose="explore", record=RECORD,
                                          chunk=10)["accuracy"].mean())
    for name, (lr, scale) in SCHEDULES.items():
        show(f"Adam, {name}", per_layer_adam(family, lr, scale, a.tasks))
    lft, _, _ = checkpoint.load(a.checkpoint)
    show("FO-LFT [cifar10] (table's)", evaluate(lft, family, a.tasks, RECORD[-1], seed=0,
                                                progress=False, purpose="explore",
                                                record=RECORD, chunk=10)["accuracy"].mean())
    return out


if __name__ == "__main__":
    main()
