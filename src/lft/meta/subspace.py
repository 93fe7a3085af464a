"""Fit a query subspace for :class:`lft.oracles.FittedSubspace` on meta-training tasks.

:func:`fit_subspace` runs a reference method with exact gradients (white-box access at
meta-training time, which LFT's meta-gradient needs anyway) on tasks drawn from the family's
meta-training part, gathers every step's gradient of the fine-tuning loss, and keeps the top
``q`` principal directions of the unit gradients (:func:`lft.oracles.subspace.fit_basis`). The
result is written to a ``.safetensors`` file that a ``{"type": "subspace", "basis": FILE}``
oracle configuration names, so every method built from that configuration (a learned rule,
each rival at each tuned step size) queries along the same directions.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lft import validation as v
from lft.meta.learners import Method, MethodConfig
from lft.oracles import DEFAULT_FO
from lft.oracles.base import FirstOrder
from lft.oracles.subspace import fit_basis, save_basis
from lft.seeding import generator as make_generator
from lft.tasks.base import TaskFamily, as_groups


class _Recorder(FirstOrder):
    """The first-order oracle, keeping every gradient it returns."""

    def __init__(self):
        super().__init__(second_order=False)
        self.gradients: list[torch.Tensor] = []

    def __call__(self, loss_fn, theta, generator=None):
        g = super().__call__(loss_fn, theta, generator)
        self.gradients.append(g.detach())
        return g


def gather_gradients(reference: MethodConfig, family: TaskFamily, n_tasks: int = 200,
                     steps: int = 20, seed: int = 0) -> torch.Tensor:
    """``(n_tasks * steps, D)``: the fine-tuning-loss gradient at each of ``steps`` steps of
    ``reference`` (run with exact gradients) on ``n_tasks`` meta-training tasks (their own
    ``"subspace-*"`` streams, disjoint from test tasks)."""
    where = "gather_gradients"
    n_tasks = v.integer("n_tasks", n_tasks, 1, where=where)
    steps = v.integer("steps", steps, 1, where=where)
    cfg = MethodConfig.from_dict({**reference.to_dict(), "oracle": DEFAULT_FO.to_dict()})
    method = Method(cfg, family, seed)
    recorder = _Recorder()
    method.oracle = recorder
    part = family.for_part("meta-train")
    groups = as_groups(part.sample(n_tasks, make_generator(seed, "subspace-tasks")))
    if len(groups) != 1:
        raise ValueError("gather_gradients: a fitted subspace is for one optimisee shape; fit "
                         "one per shape group (e.g. per source of a mixture)")
    method.curve(groups[0], steps, make_generator(seed, "subspace-run"), "val", record=[0])
    return torch.cat(recorder.gradients)


def fit_subspace(path: str | Path, reference: MethodConfig, family: TaskFamily, q: int = 20,
                 n_tasks: int = 200, steps: int = 20, seed: int = 0) -> dict:
    """Fit a ``q``-direction basis on ``family``'s meta-training tasks along ``reference``'s
    trajectories (:func:`gather_gradients`), write it to ``path`` and return the oracle
    configuration that queries along it, with ``energy``: the share of the unit gradients'
    squared norm the basis holds (how much of a gradient the estimate can see)."""
    grads = gather_gradients(reference, family, n_tasks, steps, seed)
    basis = fit_basis(grads, q)
    unit = grads / grads.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    energy = float((unit @ basis.T).pow(2).sum() / unit.pow(2).sum())
    save_basis(path, basis, {"reference": reference.label, "tasks": n_tasks, "steps": steps,
                             "seed": seed, "energy": f"{energy:.4f}"})
    config = {"type": "subspace", "q": q, "dim": int(grads.shape[1]), "mu": 0.005,
              "scheme": "forward", "basis": str(path)}
    return {"oracle": config, "energy": energy}
