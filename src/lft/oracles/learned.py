"""A learned sampling distribution for zeroth-order estimates (after ZO-L2L, Ruan et al. 2020).

:class:`LearnedSampling` draws its ``q`` query directions as ``u = sigma * z``, ``z ~ N(0, I)``,
with a per-coordinate standard deviation ``sigma`` that a small coordinate-wise network
computes from the oracle's memory (a running mean of the squared past estimates, on a log
scale relative to the optimisee's mean). The estimate ``mean_i slope_i u_i`` is unbiased for
``diag(sigma^2) grad``: the network learns where to search, and the rule it feeds sees a
preconditioned gradient.

The function values stay a black box: the queries are made at detached points, without
autograd. The meta-gradient reaches the network through the directions themselves
(``u = sigma * z`` reparameterised), which is what lets it learn with the update rule
(:class:`lft.meta.Method` meta-trains it whenever it meta-trains the rule). The network's
last layer starts at zero, so an untrained oracle is exactly the Gaussian one; ``sigma`` is
normalised to a mean square of one per optimisee, so learning moves the search, not its size.
"""

from __future__ import annotations

import torch
from torch import nn

from lft import validation as v
from lft.oracles.base import FiniteDifferences, check_batch, differences


class LearnedSampling(nn.Module, FiniteDifferences):
    """Zeroth-order oracle with a meta-learned per-coordinate sampling distribution.

    Args:
        q: directions per step.
        mu: finite-difference step.
        scheme: ``"forward"`` (``q + 1`` queries) or ``"antithetic"`` (``2q``).
        hidden: width of the coordinate-wise network.
        beta: decay of the running mean of squared estimates the network reads.
    """

    def __init__(self, q: int = 20, mu: float = 0.005, scheme: str = "forward",
                 hidden: int = 8, beta: float = 0.9):
        nn.Module.__init__(self)
        where = "learned-sampling oracle"
        self._check(q, mu, scheme, where)
        self.hidden = v.integer("hidden (network width)", hidden, 1, where=where)
        self.beta = v.number("beta (running-mean decay)", beta, 0.0, 1.0, high_open=True,
                             where=where)
        self.net = nn.Sequential(nn.Linear(1, self.hidden), nn.Tanh(), nn.Linear(self.hidden, 1))
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)

    def config(self) -> dict:
        """JSON that rebuilds this oracle with :func:`lft.oracles.build_oracle`."""
        return {"type": "learned", "q": self.q, "mu": self.mu, "scheme": self.scheme,
                "hidden": self.hidden, "beta": self.beta}

    def sigma(self, theta: torch.Tensor, memory: torch.Tensor | None) -> torch.Tensor:
        """``(B, D)`` per-coordinate standard deviations, mean square one per optimisee."""
        if memory is None:
            feature = torch.zeros_like(theta)
        else:
            logs = torch.log(memory + 1e-20)
            feature = (logs - logs.mean(dim=-1, keepdim=True)) / 10
        log_sigma = self.net(feature.detach()[..., None].to(self.net[0].weight.dtype))[..., 0]
        sigma = torch.exp(log_sigma.clamp(-5.0, 5.0)).to(theta.dtype)
        return sigma / sigma.pow(2).mean(dim=-1, keepdim=True).sqrt()

    def estimate(self, loss_fn, theta, generator=None, memory=None):
        """``(estimate, memory)``; the estimate carries a graph to the network's parameters
        when autograd is on."""
        check_batch(theta, "LearnedSampling")
        b, d = theta.shape
        sigma = self.sigma(theta.detach(), memory)
        z = torch.randn(b, self.q, d, generator=generator, dtype=theta.dtype).to(theta.device)
        u = sigma[:, None, :] * z
        with torch.no_grad():  # black-box queries at detached points
            slopes = differences(loss_fn, theta.detach(), u.detach(), self.mu, self.scheme)
        est = torch.einsum("bq,bqd->bd", slopes, u) / self.q
        square = est.detach() ** 2
        memory = square if memory is None else self.beta * memory + (1 - self.beta) * square
        return est, memory

    def forward(self, loss_fn, theta, generator=None):
        """The estimate alone (``oracle(loss_fn, theta, generator)``)."""
        return self.estimate(loss_fn, theta, generator, None)[0]
