"""Random-direction zeroth-order estimates (Eq. 6): i.i.d. Gaussian, Rademacher, sphere or
orthogonal directions, from function values only.

With ``q`` directions on ``D`` coordinates each estimate has a cosine of about ``sqrt(q/D)``
with the true gradient; :mod:`lft.oracles.history` spends the same queries better.
"""

from __future__ import annotations

import torch

from lft import validation as v
from lft.oracles.base import SCHEMES, LossFn, Oracle, check_batch, queries

DIRECTIONS = ("gaussian", "rademacher", "sphere", "orthogonal")


class ZerothOrder(Oracle):
    """Random-direction finite-difference gradient estimate (Eq. 6).

    Args:
        q: directions per step.
        mu: smoothing radius.
        directions: ``"gaussian"`` (``u ~ N(0, I)``, scale ``1/(mu q)``), ``"rademacher"``
            (entries +-1, also ``E[u u^T] = I``, lower variance and cheaper to draw) or
            ``"sphere"`` (``u`` uniform on the unit sphere, scale ``D/(mu q)``) or
            ``"orthogonal"`` (``q <= D`` orthogonal directions of norm ``sqrt(D)``, a random
            basis of a random ``q``-dimensional subspace: unbiased like Gaussian directions,
            without two directions measuring the same thing).
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
        self.scheme = v.choice("scheme", scheme, SCHEMES, where)
        self.differentiable = v.boolean("differentiable", differentiable, where)

    def config(self) -> dict:
        """JSON that rebuilds this oracle with :func:`lft.oracles.build_oracle`."""
        return {"type": self.kind, "q": self.q, "mu": self.mu, "directions": self.directions,
                "scheme": self.scheme, "differentiable": self.differentiable}

    @property
    def queries_per_step(self) -> int:
        """Function evaluations per estimate."""
        return queries(self.q, self.scheme)

    def sample_directions(self, theta: torch.Tensor, generator: torch.Generator | None):
        """``(B, q, D)`` directions and the estimator's scale factor."""
        b, d = theta.shape
        if self.directions == "rademacher":
            bits = torch.randint(0, 2, (b, self.q, d), generator=generator, dtype=torch.int8)
            return (2 * bits - 1).to(theta.dtype).to(theta.device), 1.0
        if self.directions == "orthogonal":
            if self.q > d:
                raise ValueError(f"orthogonal directions: q = {self.q} directions do not fit "
                                 f"in D = {d} coordinates; use q <= {d} or Gaussian directions")
            z = torch.randn(b, d, self.q, generator=generator, dtype=theta.dtype)
            basis = torch.linalg.qr(z.to(theta.device))[0]  # (B, D, q), orthonormal columns
            return basis.transpose(1, 2) * d ** 0.5, 1.0
        u = torch.randn(b, self.q, d, generator=generator, dtype=theta.dtype)
        u = u.to(theta.device)
        if self.directions == "sphere":
            return u / u.norm(dim=-1, keepdim=True), float(d)
        return u, 1.0

    def __call__(self, loss_fn: LossFn, theta: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        check_batch(theta, "ZerothOrder")
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
