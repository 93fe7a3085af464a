"""The loss pieces of the UAP tasks (:mod:`lft.tasks.uap`): the perturbation budget, the C&W
margin of Eq. (12), attack success and steps to a target ASR.

Kept apart from the task family so that :mod:`lft.tasks.uap` stays one concern (tasks and their
data); :mod:`lft.tasks.uap` re-exports every name here.
"""

from __future__ import annotations

import math

import torch

NORMS = ("2", "inf")
#: the smallest norm the l2 projection divides by (a zero perturbation stays zero)
_TINY = 1e-12


def project_ball(theta: torch.Tensor, eps: float, norm: str = "2") -> torch.Tensor:
    """``theta`` (``(..., D)``, one perturbation per row) projected onto the ball of radius
    ``eps``: ``theta * min(1, eps / ||theta||_2)`` for ``norm="2"``, ``clamp(theta, -eps, eps)``
    for ``norm="inf"``. Both are differentiable almost everywhere (the meta-gradient of a
    fine-tuner trained under the budget flows through them); rows inside the ball are unchanged.
    """
    if norm == "inf":
        return theta.clamp(-eps, eps)
    if norm != "2":
        raise ValueError(f"norm must be one of {list(NORMS)}, got {norm!r}")
    size = theta.norm(dim=-1, keepdim=True).clamp_min(_TINY)
    return theta * (eps / size).clamp(max=1.0)


def check_budget(eps, norm, where: str) -> tuple[float | None, str]:
    """``(eps, norm)`` checked: ``eps`` ``None`` (no budget) or a finite number > 0, ``norm``
    ``"2"`` or ``"inf"`` (``2`` and ``math.inf`` are accepted for them); a bad one raises one
    ``ValueError`` line naming the option and the fix."""
    if isinstance(norm, (int, float)) and not isinstance(norm, bool):
        norm = {2: "2", math.inf: "inf"}.get(norm, norm)
    if norm not in NORMS:
        raise ValueError(f"{where}: norm must be \"2\" (||delta||_2 <= eps) or \"inf\" "
                         f"(|delta_i| <= eps), got {norm!r}; fix: pass norm=\"2\" or "
                         "norm=\"inf\"")
    if eps is None:
        if norm != "2":
            raise ValueError(f"{where}: norm={norm!r} sets the shape of a perturbation budget, "
                             "but eps is None (no budget); fix: pass eps=RADIUS as well, or "
                             "leave norm at its default")
        return None, norm
    ok = isinstance(eps, (int, float)) and not isinstance(eps, bool) and math.isfinite(eps) \
        and eps > 0
    if not ok:
        raise ValueError(f"{where}: eps (the perturbation budget's radius) must be a finite "
                         f"number > 0, got {eps!r}; fix: pass a positive radius, or eps=None "
                         "for no budget")
    return float(eps), norm


def cw_margin(logits: torch.Tensor, y: torch.Tensor, kappa: float = 0.0) -> torch.Tensor:
    """Per-image C&W margin ``max(log p_y - max_{j != y} log p_j, -kappa)``.

    ``logits`` ``(..., K)``, ``y`` ``(...)`` -> ``(...)``. Log-probabilities and logits give
    the same margin (they differ by one constant per image); log-probabilities follow Eq. (12).
    """
    logp = logits.log_softmax(-1)
    true = logp.gather(-1, y[..., None]).squeeze(-1)
    is_true = torch.nn.functional.one_hot(y, logits.shape[-1]).bool()
    other = logp.masked_fill(is_true, float("-inf")).amax(-1)
    return (true - other).clamp_min(-kappa)


def attack_success(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fraction of images whose top-1 prediction is not ``y``.

    ``(..., N, K), (..., N) -> (...)``: the attack success rate of one perturbation per row.
    """
    return (logits.argmax(-1) != y).float().mean(-1)


def steps_to_asr(asr: torch.Tensor, threshold: float = 0.75,
                 max_steps: int | None = None) -> torch.Tensor:
    """First step ``k`` at which ``asr[..., k] >= threshold``, NaN if none within ``max_steps``.

    ``asr`` holds ASR at steps ``0..K`` along its last axis (step 0 is the random start), e.g.
    one row per task, or the mean curve over tasks. Returns a float tensor of shape
    ``asr.shape[:-1]``.
    """
    if max_steps is not None:
        asr = asr[..., :max_steps + 1]
    hit = asr >= threshold
    first = hit.float().argmax(-1).float()
    return torch.where(hit.any(-1), first, torch.full_like(first, float("nan")))
