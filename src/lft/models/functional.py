"""A module turned into a pure function of flat, batched parameter vectors (torch.func)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call, vmap

from lft.models.batched import batched_sequential
from lft.models.roles import roles_from_names


class FlatModel:
    """Wraps ``module`` so that it can be called as ``f(theta, x)`` with ``theta`` flat.

    ``theta`` has shape ``(B, D)`` (one parameter vector per task) or ``(B, P, D)`` (``P``
    perturbed copies per task, as the zeroth-order oracle needs); ``x`` has shape
    ``(B, N, *in_shape)`` and is shared by the ``P`` copies of its task. Parameters are
    unflattened as views, so gradients flow back to ``theta`` unchanged.

    Sequentials of linear layers and activations run as batched matrix products
    (:mod:`lft.models.batched`); any other module runs through ``vmap(functional_call)``.
    """

    def __init__(self, module: nn.Module):
        self.module = module
        self.names: list[str] = []
        self.shapes: list[torch.Size] = []
        for name, p in module.named_parameters():
            self.names.append(name)
            self.shapes.append(p.shape)
        self.numels = [math.prod(s) for s in self.shapes]
        self.dim = sum(self.numels)
        self._roles: torch.Tensor | None = None
        self._direct = batched_sequential(module)
        self._batched = vmap(self._call_one, in_dims=(0, 0))
        self._batched_perturbed = vmap(vmap(self._call_one, in_dims=(0, None)), in_dims=(0, 0))

    @property
    def roles(self) -> torch.Tensor:
        """Each coordinate's role, ``(D,)`` integers in ``0..5``: weight or bias, of the first,
        a middle or the last parameterised layer (``2 * position + is_bias``).

        Defined for any architecture, so a coordinate-wise rule can treat layers differently
        and still serve incongruous models (an MLP and a CNN share these six roles).
        Computed once and cached (a fresh clone is returned).
        """
        if self._roles is None:
            self._roles = self._compute_roles()
        return self._roles.clone()

    def _compute_roles(self) -> torch.Tensor:
        # the one definition of roles, shared with the torch.optim drop-in (lft.models.roles)
        per_tensor = roles_from_names(self.names)
        return torch.cat([torch.full((numel,), role, dtype=torch.long)
                          for role, numel in zip(per_tensor, self.numels)])

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a ``(..., D)`` vector into named parameter tensors of shape ``(..., *shape)``."""
        if theta.shape[-1] != self.dim:
            raise ValueError(
                f"parameter vector has {theta.shape[-1]} entries but the model needs {self.dim}"
            )
        lead = theta.shape[:-1]
        parts = torch.split(theta, self.numels, dim=-1)
        return {n: p.reshape(*lead, *s) for n, p, s in zip(self.names, parts, self.shapes)}

    def flatten(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Inverse of :meth:`unflatten` for parameters without leading batch dimensions."""
        return torch.cat([params[n].reshape(-1) for n in self.names])

    def _call_one(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, self.unflatten(theta), (x,))

    def __call__(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Batched forward pass: ``(B, D), (B, N, ...) -> (B, N, ...)`` or with ``P`` copies."""
        if self._direct is not None and theta.dim() in (2, 3):
            return self._direct(self.unflatten(theta), x, theta.dim() - 1)
        if theta.dim() == 2:
            return self._batched(theta, x)
        if theta.dim() == 3:
            return self._batched_perturbed(theta, x)
        raise ValueError(f"theta must have shape (B, D) or (B, P, D), got {tuple(theta.shape)}")

    def init(self, n: int, generator: torch.Generator | None = None,
             dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``n`` independent random initialisations, PyTorch's default layer init.

        Each weight of fan-in ``f`` (and the bias that follows it) is drawn from
        ``U(-1/sqrt(f), 1/sqrt(f))``, which is what ``nn.Linear`` and ``nn.Conv2d`` do.
        """
        chunks = []
        fan_in = 1
        for shape, numel in zip(self.shapes, self.numels):
            if len(shape) >= 2:
                fan_in = math.prod(shape[1:])
            bound = 1.0 / math.sqrt(fan_in)
            u = torch.rand(n, numel, generator=generator, dtype=dtype)
            chunks.append((2 * u - 1) * bound)
        return torch.cat(chunks, dim=1)


