"""The meta-objective: which split the meta-loss reads and how steps are weighted (Eq. 4).

``sum_k w_k * l(theta_k; D_meta) / s`` averaged over tasks, where ``D_meta`` is ``D_val`` for LFT
and MAML and ``D_tr`` (merged with ``D_val``) for L2O, and ``s`` optionally normalises each task
by its loss at the initial optimisee, so tasks of large scale (a sine of amplitude 5 against one
of 0.1) do not dominate the meta-gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

WEIGHTINGS = ("uniform", "linear", "final")


def step_weights(kind: str, horizon: int) -> torch.Tensor:
    """``w_1..w_K``: (i) uniform ``1``, (ii) linear ``k``, (iii) final-only ``1[k = K]``.

    Normalised to sum to one so losses of different horizons are on the same scale.
    """
    if horizon < 1:
        raise ValueError(f"the horizon must be at least one step, got {horizon}")
    k = torch.arange(1, horizon + 1, dtype=torch.float32)
    if kind == "uniform":
        w = torch.ones_like(k)
    elif kind == "linear":
        w = k
    elif kind == "final":
        w = (k == horizon).float()
    else:
        raise ValueError(f"unknown step weighting {kind!r}; choose from {list(WEIGHTINGS)}")
    return w / w.sum()


@dataclass(frozen=True)
class Objective:
    """Meta-loss configuration: ``split`` read, step ``weighting``, per-task ``normalize``."""

    split: str = "val"
    weighting: str = "uniform"
    normalize: bool = True

    def __post_init__(self):
        if self.split not in ("train", "val"):
            raise ValueError(f"the meta-loss reads 'train' or 'val', got {self.split!r}")
        step_weights(self.weighting, 1)  # validates the name
