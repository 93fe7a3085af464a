"""Worked example 1: fine-tune your own model with a pretrained learned fine-tuner.

A pretrained fine-tuner (``lft.FineTuner.load``) is a meta-trained update rule packaged with
``lft``; ``.optimizer(...)`` makes it a ``torch.optim.Optimizer`` for any ``nn.Module``. Here
the model is a small regressor fitted from a random start on 10 examples, the few-shot setting
the ``sine-fo-lft`` rule was meta-trained for; the same loop with ``torch.optim.Adam`` (its
learning rate picked from a small grid on these same examples) is printed for comparison.

The zeroth-order fine-tuner ``sine-zo-lft`` needs only loss values: ``opt.step(closure)``
estimates the gradient itself, so the model need not be differentiable.

Run::

    python examples/fine_tune_your_model.py [--steps 20] [--seed 0]

About a second on one CPU core; ``tests/test_examples.py`` runs it with ``--steps 2``.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import lft


def your_model() -> nn.Module:
    """Stands for the user's model: any ``nn.Module`` (here the 1-40-40-1 ReLU MLP)."""
    return nn.Sequential(nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(),
                         nn.Linear(40, 1))


def your_data(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """10 training examples and 100 held-out ones of ``y = 3 sin(x - 1)``."""
    g = torch.Generator().manual_seed(seed)
    x, x_test = (torch.rand(n, 1, generator=g) * 10 - 5 for n in (10, 100))
    return x, 3 * torch.sin(x - 1), x_test, 3 * torch.sin(x_test - 1)


def fine_tune(make_optimizer, steps: int, seed: int, zeroth_order: bool = False) -> dict:
    """Fit a fresh model (seeded start) for ``steps`` steps; training and held-out MSE."""
    torch.manual_seed(seed)
    model = your_model()
    x, y, x_test, y_test = your_data(seed)
    opt = make_optimizer(model)

    def loss_fn():
        return nn.functional.mse_loss(model(x), y)

    with torch.no_grad():
        start = float(loss_fn())
    for _ in range(steps):
        opt.zero_grad()
        if zeroth_order:
            opt.step(loss_fn)  # loss values only: the optimiser estimates the gradient
        else:
            loss_fn().backward()
            opt.step()
    with torch.no_grad():
        test = float(nn.functional.mse_loss(model(x_test), y_test))
        return {"start": start, "train": float(loss_fn()), "test": test}


def main(argv: list[str] | None = None) -> dict[str, dict]:
    """Fine-tune with each pretrained fine-tuner and with tuned Adam; print and return MSEs."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20, help="fine-tuning steps (default 20)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    print(f"pretrained fine-tuners: {', '.join(lft.FineTuner.list())}")
    results = {}
    # the five lines a user needs: load, wrap, and the usual torch.optim loop
    fo = lft.FineTuner.load("sine-fo-lft")
    results["sine-fo-lft"] = fine_tune(lambda m: fo.optimizer(m.named_parameters()),
                                       a.steps, a.seed)
    zo = lft.FineTuner.load("sine-zo-lft")
    results["sine-zo-lft"] = fine_tune(lambda m: zo.optimizer(m.named_parameters(), q=20),
                                       a.steps, a.seed, zeroth_order=True)
    best = min((fine_tune(lambda m, lr=lr: torch.optim.Adam(m.parameters(), lr=lr), a.steps,
                          a.seed)["train"], lr) for lr in (0.003, 0.01, 0.03, 0.1))[1]
    results[f"Adam lr={best}"] = fine_tune(lambda m: torch.optim.Adam(m.parameters(), lr=best),
                                           a.steps, a.seed)
    print(f"{'optimiser':<16} {'MSE at start':>12} {'train MSE':>10} {'held-out MSE':>12} "
          f"(after {a.steps} steps on 10 examples)")
    for name, r in results.items():
        print(f"{name:<16} {r['start']:>12.3f} {r['train']:>10.3f} {r['test']:>12.3f}")
    return results


if __name__ == "__main__":
    main()
