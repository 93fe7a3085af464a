"""Worked example 2: meta-train a learned fine-tuner (LFT) on a task family of your own.

A task family is a class with ``sample(n, generator) -> TaskBatch``: ``n`` tasks, each with a
fine-tuning split ``"train"`` (the few shots the inner loop sees), a validation split ``"val"``
(what LFT's meta-loss reads) and a ``"test"`` split (reported only), plus the model to fit as a
:class:`lft.models.FlatModel`. Here each task is a random quadratic ``y = a x^2 + b x + c`` on
``[-1, 1]``, fitted by a 1-32-1 tanh MLP from 8 points.

The script meta-trains FO-LFT on the family, tunes Adam's learning rate on meta-training tasks,
evaluates both on held-out tasks, saves the fine-tuner as a checkpoint and loads it back as a
``torch.optim`` optimiser (``lft.FineTuner.load(path)``), as a user of the rule would.

Run::

    python examples/meta_train_your_task_family.py [--iterations 300] [--out DIR]

About 30 s on one CPU core; ``tests/test_examples.py`` runs it with ``--iterations 2``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch import nn

import lft
from lft import checkpoint
from lft.models import FlatModel
from lft.tasks import TaskBatch, TaskFamily


class QuadraticFamily(TaskFamily):
    """``y = a x^2 + b x + c`` with ``a, b, c ~ U[-1, 1]``, ``x ~ U[-1, 1]``; MLP 1-32-1."""

    name = "quadratic"
    congruous = True  # every task has the same model, so one batched computation serves all

    def __init__(self, shots: int = 8, val_points: int = 8, test_points: int = 50):
        if min(shots, val_points, test_points) < 1:
            raise ValueError("the quadratic family needs at least one point per split")
        self.shots, self.val_points, self.test_points = shots, val_points, test_points
        self.model = FlatModel(nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 1)))

    def config(self) -> dict:
        """JSON stored in checkpoints (rebuilding it needs this class registered)."""
        return {"task": self.name, "shots": self.shots, "val_points": self.val_points,
                "test_points": self.test_points}

    def sample(self, n: int, generator: torch.Generator | None = None) -> TaskBatch:
        """``n`` tasks; ``data[split] = (x, y)`` of shape ``(n, points, 1)``."""
        coef = torch.rand(n, 1, 3, generator=generator) * 2 - 1
        data = {}
        for split, count in (("train", self.shots), ("val", self.val_points),
                             ("test", self.test_points)):
            x = torch.rand(n, count, 1, generator=generator) * 2 - 1
            data[split] = (x, coef[..., :1] * x ** 2 + coef[..., 1:2] * x + coef[..., 2:])
        return TaskBatch(self.model, data)  # MSE loss and metric by default


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    """Meta-train LFT, compare with tuned Adam on held-out tasks; return the mean MSE curves."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=300, help="meta-iterations (default 300)")
    p.add_argument("--steps", type=int, default=10, help="fine-tuning steps K (default 10)")
    p.add_argument("--tasks", type=int, default=200, help="held-out test tasks (default 200)")
    p.add_argument("--out", default=None, help="folder for the checkpoint (default: temporary)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    family = QuadraticFamily()

    # LFT: a coordinate-wise LSTM rule, meta-loss on D_val, unrolled for K steps
    method = lft.Method(lft.preset("lft", horizon=a.steps), family, seed=0)
    config = lft.TrainConfig(iterations=a.iterations, meta_batch=8, meta_lr=3e-3, lr_decay=0.1)
    lft.MetaTrainer(method, family, config).train(progress=False)

    # the baseline: Adam from the same random starts, learning rate tuned on training tasks
    adam = lft.preset("adam", horizon=a.steps)
    best, _ = lft.tune_learning_rate(adam, family, [0.01, 0.03, 0.1, 0.3], steps=a.steps,
                                     n_tasks=50)
    adam.rule["lr"] = best
    methods = {"FO-LFT": method, f"Adam (lr {best})": lft.Method(adam, family)}
    curves = {}
    for name, m in methods.items():
        mse = lft.evaluate(m, family, n_tasks=a.tasks, steps=a.steps, progress=False)["mse"]
        curves[name] = mse.mean().tolist()
    marks = sorted({0, 1, a.steps // 2, a.steps})
    print(f"test MSE on {a.tasks} held-out quadratics, {family.shots} shots; step "
          + ", ".join(map(str, marks)))
    for name, c in curves.items():
        print(f"  {name:<16} " + "  ".join(f"{c[k]:.4f}" for k in marks))

    # the meta-trained rule as a torch.optim optimiser for a model of the user's
    folder = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="lft-example-"))
    path = checkpoint.save(folder / "quadratic-fo-lft.safetensors", method, family)
    model = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 1))
    x = torch.linspace(-1, 1, 8)[:, None]
    opt = lft.FineTuner.load(path).optimizer(model.named_parameters())
    for _ in range(a.steps):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), 0.5 * x ** 2 - x).backward()
        opt.step()
    print(f"saved {path}; loaded back as {type(opt).__name__} and fine-tuned a new model")
    return curves


if __name__ == "__main__":
    main()
