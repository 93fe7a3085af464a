"""The oracle protocol, the first-order oracle and the finite differences every zeroth-order
oracle measures.

An oracle turns the fine-tuning loss into what the update rule is fed at each step. It is
called as ``oracle(loss_fn, theta, generator)`` (a gradient or an estimate shaped like
``theta``), or, by the inner loop, as ``oracle.estimate(loss_fn, theta, generator, memory)``,
which also returns the oracle's ``memory`` for the next step: the history a history-guided
estimator keeps (``None`` for oracles without one, and at the start of every trajectory).
``loss_fn`` maps optimisees ``(B, D)`` to per-task losses ``(B,)`` and ``(B, P, D)`` to
``(B, P)``.

``queries_per_step`` counts the loss evaluations of the fine-tuning set one estimate costs,
the base point included (0 for the first-order oracle, which costs one forward and one
backward pass instead).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lft import validation as v

LossFn = Callable[[torch.Tensor], torch.Tensor]
SCHEMES = ("forward", "antithetic")


class Oracle:
    """Base of every oracle: ``estimate`` with memory, ``__call__`` without."""

    kind = "oracle"
    queries_per_step: int = 0

    def estimate(self, loss_fn: LossFn, theta: torch.Tensor,
                 generator: torch.Generator | None = None, memory=None):
        """``(estimate, memory)``: a stateless oracle ignores and returns ``memory``."""
        return self(loss_fn, theta, generator), memory

    def __call__(self, loss_fn: LossFn, theta: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        return self.estimate(loss_fn, theta, generator, None)[0]

    def config(self) -> dict:  # pragma: no cover - every oracle overrides it
        """JSON that rebuilds this oracle with :func:`lft.oracles.build_oracle`."""
        raise NotImplementedError


def plain_grad(loss_fn: LossFn, theta: torch.Tensor) -> torch.Tensor:
    """The gradient of ``loss_fn(theta).sum()`` at a detached copy of ``theta``."""
    with torch.enable_grad():
        leaf = theta.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(loss_fn(leaf).sum(), leaf)
    return g


class FirstOrder(Oracle):
    """Exact gradient of the fine-tuning loss by autograd.

    With ``second_order=True`` the gradient keeps its dependence on earlier steps (the Hessian
    term of Statement 1, Eqs. 8-9); with ``False`` it is treated as a constant input, the L2L
    approximation ``d grad / d phi = 0``.
    """

    kind = "fo"
    queries_per_step = 0  # function evaluations; a gradient costs one forward + backward

    def __init__(self, second_order: bool = False):
        self.second_order = v.boolean("second_order", second_order, "first-order oracle")

    def config(self) -> dict:
        """JSON that rebuilds this oracle with :func:`lft.oracles.build_oracle`."""
        return {"type": self.kind, "second_order": self.second_order}

    def __call__(self, loss_fn: LossFn, theta: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        if self.second_order and theta.requires_grad and torch.is_grad_enabled():
            (g,) = torch.autograd.grad(loss_fn(theta).sum(), theta, create_graph=True)
            return g
        return plain_grad(loss_fn, theta)


class FiniteDifferences(Oracle):
    """Base of the zeroth-order oracles that spend ``q`` finite differences of radius ``mu``
    per step under ``scheme``: the options they share, checked once, and their query count."""

    kind = "zo"

    def _check(self, q: int, mu: float, scheme: str, where: str) -> None:
        self.q = v.integer("q (directions per step)", q, 1, where=where)
        self.mu = v.positive("smoothing radius mu", mu, where)
        self.scheme = v.choice("scheme", scheme, SCHEMES, where)

    @property
    def queries_per_step(self) -> int:
        """Loss evaluations per estimate, the base point included."""
        return queries(self.q, self.scheme)


def differences(loss_fn: LossFn, theta: torch.Tensor, u: torch.Tensor, mu: float,
                scheme: str) -> torch.Tensor:
    """Directional finite differences ``(B, q)``: ``(f(theta + mu u_i) - f(theta)) / mu``
    (``forward``, ``q + 1`` evaluations) or ``(f(theta + mu u_i) - f(theta - mu u_i)) / 2 mu``
    (``antithetic``, ``2q``), each ``~ u_i . grad f(theta)`` for small ``mu``."""
    plus = loss_fn(theta[:, None, :] + mu * u)  # (B, q)
    if scheme == "antithetic":
        return (plus - loss_fn(theta[:, None, :] - mu * u)) / (2 * mu)
    return (plus - loss_fn(theta)[:, None]) / mu


def queries(q: int, scheme: str) -> int:
    """Loss evaluations of ``q`` differences under ``scheme``, the base point included."""
    return 2 * q if scheme == "antithetic" else q + 1


def check_batch(theta: torch.Tensor, who: str) -> None:
    """Zeroth-order oracles work on a batch of flat optimisees ``(B, D)``."""
    if theta.dim() != 2:
        raise ValueError(f"{who} expects a batch of flat optimisees of shape (B, D), got "
                         f"shape {tuple(theta.shape)}")
