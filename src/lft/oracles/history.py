"""History-guided zeroth-order estimates: spend the queries where the gradient has been.

Gradients along a fine-tuning path are correlated from one step to the next, so isotropic
random directions waste most of a step's queries. Both oracles here keep the last few
estimates in their ``memory`` (most recent first, detached) and query along them:

* :class:`HistorySubspace` (the least-squares estimate with past estimates in the query span,
  after Meier et al. 2019): the ``q`` query directions are an orthonormal basis of the span of
  the last ``m`` estimates plus ``q - m`` random directions; the estimate is the least-squares
  gradient given the ``q`` measured directional derivatives, i.e. the gradient's projection
  onto that span. It is exact (up to the finite difference) when the gradient lies in the
  span and consistent as ``q`` grows to ``D``.
* :class:`GuidedES` (Maheswaranathan et al. 2019): directions drawn from
  ``N(0, alpha I + (1 - alpha) D/k U U^T)`` with ``U`` an orthonormal basis of the last ``k``
  estimates, so a share ``1 - alpha`` of the search variance lies in their span. Its estimate
  is unbiased for ``(alpha I + (1 - alpha) D/k U U^T) grad``, a gradient stretched along the
  history; with ``alpha = 1`` it is the plain Gaussian estimate.

Both cost ``q + 1`` loss evaluations per step with forward differences (``2q`` antithetic),
the same as :class:`lft.oracles.ZerothOrder` with ``q`` directions.
"""

from __future__ import annotations

import torch

from lft import validation as v
from lft.oracles.base import FiniteDifferences, check_batch, differences


def remember(memory: torch.Tensor | None, estimate: torch.Tensor, keep: int) -> torch.Tensor:
    """The last ``keep`` estimates ``(B, <=keep, D)``, most recent first, detached."""
    new = estimate.detach()[:, None, :]
    return new if memory is None else torch.cat([new, memory], dim=1)[:, :keep]


class HistorySubspace(FiniteDifferences):
    """Least-squares gradient estimate with the last ``m`` estimates in the query span.

    Args:
        q: directions (queries besides the base point) per step.
        m: past estimates kept in the span, ``0 <= m < q`` (``m = 0``: a random subspace).
        mu: finite-difference step.
        scheme: ``"forward"`` (``q + 1`` queries) or ``"antithetic"`` (``2q``, exact on
            quadratics).
    """

    def __init__(self, q: int = 20, m: int = 3, mu: float = 0.005, scheme: str = "forward"):
        where = "history-subspace oracle"
        self._check(q, mu, scheme, where)
        self.m = v.integer("m (past estimates in the span)", m, 0, self.q - 1, where=where)

    def config(self) -> dict:
        """JSON that rebuilds this oracle with :func:`lft.oracles.build_oracle`."""
        return {"type": "history", "q": self.q, "m": self.m, "mu": self.mu,
                "scheme": self.scheme}

    def basis(self, theta: torch.Tensor, memory: torch.Tensor | None,
              generator: torch.Generator | None) -> torch.Tensor:
        """``(B, D, q)`` orthonormal query directions: the history's span first, then random."""
        b, d = theta.shape
        if self.q > d:
            raise ValueError(f"history-subspace oracle: q = {self.q} directions do not fit in "
                             f"D = {d} coordinates; use q <= {d}")
        past = [] if memory is None or self.m == 0 else [memory[:, :self.m].transpose(1, 2)]
        k = past[0].shape[-1] if past else 0
        z = torch.randn(b, d, self.q - k, generator=generator, dtype=theta.dtype)
        return torch.linalg.qr(torch.cat([*past, z.to(theta.device)], dim=-1))[0]

    def estimate(self, loss_fn, theta, generator=None, memory=None):
        """``(estimate, memory)``: the projection of the gradient onto the query span."""
        check_batch(theta, "HistorySubspace")
        with torch.no_grad():
            th = theta.detach()
            basis = self.basis(th, memory, generator)
            slopes = differences(loss_fn, th, basis.transpose(1, 2), self.mu, self.scheme)
            est = torch.einsum("bdq,bq->bd", basis, slopes)
        return est, remember(memory, est, max(self.m, 1))


class GuidedES(FiniteDifferences):
    """Guided evolution strategies: a share ``1 - alpha`` of the search variance in the span
    of the last ``k`` estimates.

    Args:
        q: directions per step.
        k: past estimates whose span guides the search.
        alpha: share of the variance that stays isotropic (``1``: plain Gaussian directions).
        mu: finite-difference step.
        scheme: ``"forward"`` or ``"antithetic"``.
    """

    def __init__(self, q: int = 20, k: int = 2, alpha: float = 0.5, mu: float = 0.005,
                 scheme: str = "forward"):
        where = "guided-ES oracle"
        self._check(q, mu, scheme, where)
        self.k = v.integer("k (past estimates guiding the search)", k, 1, where=where)
        self.alpha = v.number("alpha (isotropic share)", alpha, 0.0, 1.0, where=where)

    def config(self) -> dict:
        """JSON that rebuilds this oracle with :func:`lft.oracles.build_oracle`."""
        return {"type": "guided", "q": self.q, "k": self.k, "alpha": self.alpha, "mu": self.mu,
                "scheme": self.scheme}

    def directions(self, theta: torch.Tensor, memory: torch.Tensor | None,
                   generator: torch.Generator | None) -> torch.Tensor:
        """``(B, q, D)`` directions with covariance ``alpha I + (1 - alpha) D/k U U^T``."""
        b, d = theta.shape
        u = torch.randn(b, self.q, d, generator=generator, dtype=theta.dtype).to(theta.device)
        if memory is None or self.alpha == 1.0:
            return u
        basis = torch.linalg.qr(memory[:, :self.k].transpose(1, 2))[0]  # (B, D, k')
        k = basis.shape[-1]
        w = torch.randn(b, self.q, k, generator=generator, dtype=theta.dtype).to(theta.device)
        guided = torch.einsum("bdk,bqk->bqd", basis, w)
        return self.alpha ** 0.5 * u + ((1 - self.alpha) * d / k) ** 0.5 * guided

    def estimate(self, loss_fn, theta, generator=None, memory=None):
        """``(estimate, memory)``: ``mean_i slope_i u_i`` over the guided directions."""
        check_batch(theta, "GuidedES")
        with torch.no_grad():
            th = theta.detach()
            u = self.directions(th, memory, generator)
            slopes = differences(loss_fn, th, u, self.mu, self.scheme)
            est = torch.einsum("bq,bqd->bd", slopes, u) / self.q
        return est, remember(memory, est, self.k)
