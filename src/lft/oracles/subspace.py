"""A fitted query subspace: zeroth-order estimates along directions learned on meta-training
tasks (a gradient prior, as in prior-guided black-box attacks, Cheng et al. 2019).

When every task of a family shares the optimisee's meaning coordinate by coordinate (one
victim's universal perturbation, whose pixels mean the same in every task), the gradients
of different tasks lie mostly in a few common directions. :func:`fit_basis` finds them: the
top ``q`` principal directions of unit gradients gathered on meta-training tasks (white-box
access at meta-training time, as LFT's own meta-gradient needs). :class:`FittedSubspace`
then spends a step's ``q`` queries along those ``q`` orthonormal directions ``u_i``, and
returns ``sum_i slope_i u_i``: the gradient's projection onto the subspace, exact up to the
finite difference, with no ``D/q`` noise. On MNIST UAPs (``D = 784``) a 20-direction subspace
held 53% of the gradients' energy, and projected steps reached the full gradient's ASR
(``probes/zo_subspace.py``).

The basis is a buffer of the oracle, so a checkpoint of a method that uses one carries it;
it is read from a ``.safetensors`` file (tensor ``"basis"``, ``(q, D)``; no code is executed)
when the configuration names one (``basis``), and until then the oracle refuses to estimate.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lft import validation as v
from lft.oracles.base import FiniteDifferences, check_batch, differences

WHERE = "fitted-subspace oracle"


def fit_basis(gradients: torch.Tensor, q: int) -> torch.Tensor:
    """``(q, D)`` orthonormal rows: the top ``q`` right singular vectors of ``gradients``
    ``(N, D)`` after each row is scaled to unit norm (so no task dominates by its scale)."""
    if gradients.dim() != 2 or gradients.shape[0] < q or gradients.shape[1] < q:
        raise ValueError(f"fit_basis needs at least q = {q} gradients of at least q "
                         f"coordinates as an (N, D) tensor, got shape {tuple(gradients.shape)}")
    g = gradients.detach().to(torch.float64)
    g = g / g.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    _, _, vh = torch.linalg.svd(g, full_matrices=False)
    return vh[:q].to(torch.float32).contiguous()


def save_basis(path: str | Path, basis: torch.Tensor, info: dict | None = None) -> Path:
    """Write ``basis`` ``(q, D)`` to a ``.safetensors`` file (atomically), ``info`` as its
    string metadata; returns the path."""
    from safetensors.torch import save_file

    from lft.safefiles import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({"basis": basis.detach().to(torch.float32).contiguous()}, str(tmp),
                  metadata={k: str(val) for k, val in (info or {}).items()})
    return path


def load_basis(path: str | Path) -> torch.Tensor:
    """The ``(q, D)`` basis a :func:`save_basis` file holds; clear errors otherwise."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{WHERE}: no basis file {str(path)!r}; fix: fit one with "
                         "lft.meta.fit_subspace (it writes the file) or correct the path")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{WHERE}: {str(path)!r} is not a readable .safetensors file ({e})"
                         ) from None
    if "basis" not in tensors or tensors["basis"].dim() != 2:
        raise ValueError(f"{WHERE}: {str(path)!r} holds no (q, D) tensor named 'basis'")
    return tensors["basis"]


class FittedSubspace(nn.Module, FiniteDifferences):
    """Zeroth-order oracle querying along a fixed, fitted orthonormal basis.

    Args:
        q: directions per step: the basis' first ``q`` rows.
        dim: the optimisee size the basis is for (read from ``basis`` when it names a file).
        mu: finite-difference step.
        scheme: ``"forward"`` (``q + 1`` queries) or ``"antithetic"`` (``2q``).
        basis: a ``.safetensors`` file from :func:`save_basis` (at least ``q`` rows), or
            ``None``: the basis comes later (:meth:`set_basis`, or a checkpoint's weights).
    """

    def __init__(self, q: int = 20, dim: int | None = None, mu: float = 0.005,
                 scheme: str = "forward",
                 basis: str | None = None):
        nn.Module.__init__(self)
        self._check(q, mu, scheme, WHERE)
        self.path = None if basis is None else str(basis)
        rows = None if self.path is None else load_basis(self.path)
        if rows is not None:
            if rows.shape[0] < self.q:
                raise ValueError(f"{WHERE}: {self.path!r} holds {rows.shape[0]} directions, "
                                 f"fewer than q = {self.q}; fix: lower q or fit more")
            if dim is not None and dim != rows.shape[1]:
                raise ValueError(f"{WHERE}: {self.path!r} is for optimisees of "
                                 f"{rows.shape[1]} parameters, not dim = {dim}")
            dim = rows.shape[1]
        self.dim = v.integer("dim (optimisee size; or a basis file)", dim, self.q, where=WHERE)
        self.register_buffer("basis", torch.zeros(self.q, self.dim))
        if rows is not None:
            self.set_basis(rows[:self.q])  # the leading directions: fit_basis orders them

    def config(self) -> dict:
        """JSON that rebuilds this oracle with :func:`lft.oracles.build_oracle`."""
        return {"type": "subspace", "q": self.q, "dim": self.dim, "mu": self.mu,
                "scheme": self.scheme, "basis": self.path}

    def set_basis(self, basis: torch.Tensor) -> None:
        """Use ``basis`` ``(q, dim)`` (its rows orthonormalised) from now on."""
        if tuple(basis.shape) != (self.q, self.dim):
            raise ValueError(f"{WHERE}: the basis has shape {tuple(basis.shape)}, but this "
                             f"oracle takes q = {self.q} directions of dim = {self.dim}; fix: "
                             "fit a basis for this optimisee with that q")
        rows = torch.linalg.qr(basis.detach().to(torch.float64).T).Q.T
        self.basis.copy_(rows.to(self.basis.dtype))

    @property
    def fitted(self) -> bool:
        """Whether the oracle has a basis to query along."""
        return bool(self.basis.abs().sum() > 0)

    def estimate(self, loss_fn, theta, generator=None, memory=None):
        """``(projection of the gradient onto the basis' span, memory)``."""
        check_batch(theta, "FittedSubspace")
        if theta.shape[1] != self.dim:
            raise ValueError(f"{WHERE}: its basis is for optimisees of {self.dim} parameters, "
                             f"got {theta.shape[1]}; fix: fit a basis for this family")
        if not self.fitted:
            raise ValueError(f"{WHERE}: no basis yet; fix: pass basis=FILE, call set_basis, "
                             "or fit one with lft.meta.fit_subspace")
        u = self.basis.to(theta.dtype).expand(theta.shape[0], self.q, self.dim)
        with torch.no_grad():  # black-box queries at detached points
            slopes = differences(loss_fn, theta.detach(), u, self.mu, self.scheme)
        return slopes @ self.basis.to(theta.dtype), memory

    def forward(self, loss_fn, theta, generator=None):
        """The estimate alone (``oracle(loss_fn, theta, generator)``)."""
        return self.estimate(loss_fn, theta, generator, None)[0]
