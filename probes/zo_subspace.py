"""Would a query subspace fitted on meta-training tasks close the black-box UAP gap?

Black-box ZO-LFT reached 12-14% held-out ASR on MNIST after 20 steps of 21 loss evaluations
(results/uap-rivals-black-box), against 87-92% for first-order LFT at the same eps. A
universal perturbation's coordinates mean the same pixels in every task, so gradients of
different tasks may share a few directions. This probe gathers unit gradients along projected
SGD trajectories on 200 UAP tasks from **meta-training** images (paper-kappa's loss, eps 6 on
MNIST, 2 on CIFAR-10), keeps their top r principal directions, and runs projected SGD on 200
other meta-training tasks with (a) the full gradient, (b) the gradient projected onto the r
directions and (c) forward differences along the 20 directions (21 loss evaluations, the
black-box estimate of (b)). It prints held-out-image ASR at steps 5, 10 and 20 for each step
size. No test task is read.

``--source sine`` asks the same of sine regression, whose random starts differ per task: it
runs the packaged FO-LFT rule on 300 meta-training tasks, fits the directions on its own
gradients, and runs it again with gradients projected onto the top 20 and 50 (test MSE at
steps 5, 10, 20).

    python probes/zo_subspace.py --data-dir ../shared/data --source mnist     # ~7 min
    python probes/zo_subspace.py --source sine                                # ~1 min
"""

from __future__ import annotations

import argparse
import time

import torch

from lft.experiments.uap_rivals_spec import PROFILES, uap_config
from lft.tasks import build_family

EPS = {"mnist": 6.0, "cifar10": 2.0}


def grad(batch, theta):
    theta = theta.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(batch.loss(theta).sum(), theta)
    return g


def run(batch, lr, steps=20, proj=None, zo=None, seed=4, collect=None):
    """Projected SGD on ``batch``; ``proj`` (D, r): project the gradient; ``zo`` (q, D):
    forward differences along its rows instead; ASR on the test images at 5, 10, 20."""
    theta, out = batch.init(torch.Generator().manual_seed(seed)), {}
    for k in range(1, steps + 1):
        if zo is not None:
            with torch.no_grad():
                base = batch.loss(theta)
                g = ((batch.loss(theta[:, None, :] + 0.005 * zo[None]) - base[:, None])
                     / 0.005) @ zo
        else:
            g = grad(batch, theta)
            if collect is not None:
                collect.append(g / (g.norm(dim=-1, keepdim=True) + 1e-12))
            if proj is not None:
                g = (g @ proj) @ proj.T
        theta = batch.project(theta - lr * g).detach()
        if k in (5, 10, 20):
            out[k] = round(100 * batch.metrics(theta, "test")["asr"].mean().item(), 1)
    return out


def sine() -> None:
    """The packaged FO-LFT rule with full and projected gradients on meta-training tasks."""
    from lft.finetuner import fine_tuner_method
    from lft.meta import evaluate
    from lft.oracles import FirstOrder
    from lft.tasks import SineFamily

    class Projected(FirstOrder):
        def __init__(self, basis=None):
            super().__init__()
            self.basis, self.seen = basis, []

        def __call__(self, loss_fn, theta, generator=None):
            g = super().__call__(loss_fn, theta, generator)
            self.seen.append(g / (g.norm(dim=-1, keepdim=True) + 1e-12))
            return g if self.basis is None else (g @ self.basis) @ self.basis.T

    family = SineFamily()
    method = fine_tuner_method("sine-fo-lft", family)
    method.oracle = full = Projected()
    record = [5, 10, 20]
    mse = evaluate(method, family, n_tasks=300, purpose="select", progress=False,
                   record=record)["mse"]
    print(f"sine, sine-fo-lft, 300 meta-training tasks: full gradient MSE at steps {record}: "
          f"{[round(float(x), 2) for x in mse.mean()]}", flush=True)
    _, s, vh = torch.linalg.svd(torch.cat(full.seen), full_matrices=False)
    share = [round(((s[:r] ** 2).sum() / (s ** 2).sum()).item(), 3) for r in (5, 20, 50, 100)]
    print(f"  energy in the top 5/20/50/100 directions: {share}")
    for r in (20, 50):
        method.oracle = Projected(vh[:r].T.contiguous())
        mse = evaluate(method, family, n_tasks=300, purpose="select", progress=False,
                       record=record)["mse"]
        print(f"  projected r = {r}: {[round(float(x), 2) for x in mse.mean()]}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--source", default="mnist", choices=[*sorted(EPS), "sine"])
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    if a.source == "sine":
        sine()
        return 0
    t0 = time.time()
    family = build_family(uap_config(a.source, PROFILES["paper-kappa"], a.data_dir,
                                     EPS[a.source])).for_part("meta-train")
    fit, grads = family.sample(200, torch.Generator().manual_seed(1)), []
    run(fit, 30.0, seed=3, collect=grads)
    grads = torch.cat(grads)
    _, s, vh = torch.linalg.svd(grads, full_matrices=False)
    share = [round(((s[:r] ** 2).sum() / (s ** 2).sum()).item(), 3) for r in (5, 10, 20, 50)]
    print(f"{a.source}, eps {EPS[a.source]:g}: {grads.shape[0]} unit gradients; energy in the "
          f"top 5/10/20/50 directions: {share}", flush=True)
    tasks = family.sample(200, torch.Generator().manual_seed(2))
    print("held-out-image ASR (%) at steps {5, 10, 20}, 200 meta-training tasks", flush=True)
    for lr in (3.0, 10.0, 30.0, 100.0):
        print(f"  full gradient     lr {lr:g}: {run(tasks, lr)}", flush=True)
    for r in (10, 20):
        for lr in (3.0, 10.0, 30.0, 100.0):
            print(f"  projected r = {r}  lr {lr:g}: {run(tasks, lr, proj=vh[:r].T)}", flush=True)
    for lr in (10.0, 30.0, 100.0):
        print(f"  21 evaluations    lr {lr:g}: {run(tasks, lr, zo=vh[:20])}", flush=True)
    print(f"{(time.time() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
