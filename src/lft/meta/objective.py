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


def check_weighting(kind, horizon: int | None = None, where: str = "") -> str | list[float]:
    """A step weighting: one of :data:`WEIGHTINGS`, or explicit weights ``[w_1, ..., w_K]``
    (non-negative numbers, not all zero; ``horizon`` of them when ``horizon`` is given).

    Explicit weights say which budgets the meta-loss cares about, e.g. ``[3] * 10 + [1] * 10``
    leans a 20-step rule towards its first 10 steps. Returns the name or the list of floats;
    anything else raises one ``ValueError`` line.
    """
    pre = f"{where}: " if where else ""
    if isinstance(kind, str):
        if kind not in WEIGHTINGS:
            raise ValueError(f"{pre}unknown weighting {kind!r}; choose from {list(WEIGHTINGS)} "
                             "or give a list of per-step weights")
        return kind
    if isinstance(kind, list | tuple) and kind and all(
            isinstance(w, int | float) and not isinstance(w, bool) for w in kind):
        ws = [float(w) for w in kind]
        if all(w >= 0 and w == w and w != float("inf") for w in ws) and sum(ws) > 0:
            if horizon is not None and len(ws) != horizon:
                raise ValueError(f"{pre}the weighting lists {len(ws)} step weights but the "
                                 f"horizon is {horizon} steps; give one weight per step")
            return ws
    raise ValueError(f"{pre}the weighting must be one of {list(WEIGHTINGS)} or a non-empty list "
                     f"of finite non-negative per-step weights, not all zero; got {kind!r}")


def step_weights(kind, horizon: int) -> torch.Tensor:
    """``w_1..w_K``: (i) uniform ``1``, (ii) linear ``k``, (iii) final-only ``1[k = K]``, or
    the explicit list ``kind`` (:func:`check_weighting`).

    Normalised to sum to one so losses of different horizons are on the same scale.
    """
    if horizon < 1:
        raise ValueError(f"the horizon must be at least one step, got {horizon}")
    k = torch.arange(1, horizon + 1, dtype=torch.float32)
    if not isinstance(kind, str):
        w = torch.tensor(check_weighting(kind, horizon), dtype=torch.float32)
    elif kind == "uniform":
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
    weighting: str | tuple[float, ...] = "uniform"
    normalize: bool = True

    def __post_init__(self):
        if self.split not in ("train", "val"):
            raise ValueError(f"the meta-loss reads 'train' or 'val', got {self.split!r}")
        w = check_weighting(self.weighting)
        object.__setattr__(self, "weighting", w if isinstance(w, str) else tuple(w))
