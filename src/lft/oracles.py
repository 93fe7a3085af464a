"""Gradient oracles: what the update rule is fed at each fine-tuning step.

An oracle is called as ``oracle(loss_fn, theta, generator)`` where ``loss_fn`` maps a batch of
optimisees ``(B, D)`` to per-task losses ``(B,)`` (and ``(B, P, D)`` to ``(B, P)``), and returns
a gradient or gradient estimate shaped like ``theta``.

* :class:`FirstOrder`: autograd. With ``second_order=True`` the gradient keeps its dependence on
  earlier steps (the Hessian term of Statement 1, Eqs. 8-9); with ``False`` it is treated as a
  constant input, the L2L approximation ``d grad / d phi = 0``.
* :class:`ZerothOrder`: random-direction finite differences (Eq. 6), from function values only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lft import validation as v

LossFn = Callable[[torch.Tensor], torch.Tensor]
DIRECTIONS = ("gaussian", "rademacher", "sphere")


def _plain_grad(loss_fn: LossFn, theta: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():
        leaf = theta.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(loss_fn(leaf).sum(), leaf)
    return g


class FirstOrder:
    """Exact gradient of the fine-tuning loss by autograd."""

    kind = "fo"

    def __init__(self, second_order: bool = False):
        self.second_order = v.boolean("second_order", second_order, "first-order oracle")

    def config(self) -> dict:
        """JSON that rebuilds this oracle with :func:`build_oracle`."""
        return {"type": self.kind, "second_order": self.second_order}

    queries_per_step = 0  # function evaluations; a gradient costs one forward + backward

    def __call__(self, loss_fn: LossFn, theta: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        if self.second_order and theta.requires_grad and torch.is_grad_enabled():
            (g,) = torch.autograd.grad(loss_fn(theta).sum(), theta, create_graph=True)
            return g
        return _plain_grad(loss_fn, theta)


class ZerothOrder:
    """Random-direction finite-difference gradient estimate (Eq. 6).

    Args:
        q: directions per step.
        mu: smoothing radius.
        directions: ``"gaussian"`` (``u ~ N(0, I)``, scale ``1/(mu q)``), ``"rademacher"``
            (entries +-1, also ``E[u u^T] = I``, lower variance and cheaper to draw) or
            ``"sphere"`` (``u`` uniform on the unit sphere, scale ``D/(mu q)``).
        scheme: ``"forward"`` (``q + 1`` queries) or ``"antithetic"`` (central, ``2q`` queries).
        differentiable: keep the estimate's (first-order) dependence on earlier steps in the
            meta-gradient; off by default since float32 differences of size ``mu`` are noisy.
    """

    kind = "zo"

    def __init__(self, q: int = 20, mu: float = 0.005, directions: str = "gaussian",
                 scheme: str = "forward", differentiable: bool = False):
        where = "zeroth-order oracle"
        self.q = v.integer("q (directions per step)", q, 1, where=where)
        self.mu = v.positive("smoothing radius mu", mu, where)
        self.directions = v.choice("directions", directions, DIRECTIONS, where)
        self.scheme = v.choice("scheme", scheme, ("forward", "antithetic"), where)
        self.differentiable = v.boolean("differentiable", differentiable, where)

    def config(self) -> dict:
        """JSON that rebuilds this oracle with :func:`build_oracle`."""
        return {"type": self.kind, "q": self.q, "mu": self.mu, "directions": self.directions,
                "scheme": self.scheme, "differentiable": self.differentiable}

    @property
    def queries_per_step(self) -> int:
        """Function evaluations per estimate."""
        return 2 * self.q if self.scheme == "antithetic" else self.q + 1

    def sample_directions(self, theta: torch.Tensor, generator: torch.Generator | None):
        """``(B, q, D)`` directions and the estimator's scale factor."""
        b, d = theta.shape
        if self.directions == "rademacher":
            bits = torch.randint(0, 2, (b, self.q, d), generator=generator, dtype=torch.int8)
            return (2 * bits - 1).to(theta.dtype).to(theta.device), 1.0
        u = torch.randn(b, self.q, d, generator=generator, dtype=theta.dtype)
        u = u.to(theta.device)
        if self.directions == "sphere":
            return u / u.norm(dim=-1, keepdim=True), float(d)
        return u, 1.0

    def __call__(self, loss_fn: LossFn, theta: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        if theta.dim() != 2:
            raise ValueError("ZerothOrder expects a batch of flat optimisees of shape (B, D)")
        track = self.differentiable and theta.requires_grad and torch.is_grad_enabled()
        with torch.set_grad_enabled(track):
            th = theta if track else theta.detach()
            u, scale = self.sample_directions(th, generator)
            plus = loss_fn(th[:, None, :] + self.mu * u)  # (B, q)
            if self.scheme == "antithetic":
                minus = loss_fn(th[:, None, :] - self.mu * u)
                diff, denom = plus - minus, 2 * self.mu * self.q
            else:
                diff, denom = plus - loss_fn(th)[:, None], self.mu * self.q
            return (scale / denom) * torch.einsum("bq,bqd->bd", diff, u)


def build_oracle(config: dict):
    """Build an oracle from ``{"type": "fo"|"zo", **kwargs}``; bad options raise ``ValueError``."""
    config = v.mapping("a gradient-oracle configuration", config)
    kind = config.pop("type", None)
    cls = {"fo": FirstOrder, "zo": ZerothOrder}.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown gradient oracle {kind!r}; choose 'fo' (gradients) or 'zo' "
                         "(function values only)")
    v.known_options(f"gradient oracle {kind!r}", config, v.parameters_of(cls.__init__))
    try:
        return cls(**config)
    except TypeError as e:
        raise ValueError(f"bad options for oracle {kind!r}: {e}") from None


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row cosine similarity, for checking estimate quality."""
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1) + 1e-12)


__all__ = ["FirstOrder", "ZerothOrder", "build_oracle", "cosine"]
