"""Input features of a coordinate-wise learned rule, computed from the raw gradient.

* ``raw``: the gradient times ``scale``.
* ``logsign``: Andrychowicz et al. (2016, App. A) with ``p``: ``(log|g|/p, sign g)`` when
  ``|g| >= e^-p``, else ``(-1, e^p g)``; scale-free and bounded, which is what makes LSTM
  meta-training stable across tasks whose gradients differ by orders of magnitude.
* ``adam``: RNNprop's relative gradients (Lv et al. 2017): ``m_hat/sqrt(v_hat)`` and
  ``g/sqrt(v_hat)``, stateful (moments carried in the rule state).
* ``role``: a one-hot of the coordinate's role (weight/bias of the first/middle/last layer,
  ``FlatModel.roles``), constant over steps and kept in the state, so one LSTM can act
  differently per kind of parameter (S7's per-group rules, without per-group weights).
* ``param``: the coordinate's current value, so the rule can learn shrinkage (weight decay)
  as well as gradient steps; needs ``theta`` in ``update``.

Every feature is differentiable in ``g`` so second-order meta-gradients flow through it.
"""

from __future__ import annotations

import math

import torch

FEATURES = ("raw", "logsign", "adam", "param", "role")
N_ROLES = 6


def feature_width(features: tuple[str, ...]) -> int:
    """Number of input channels the given features produce per coordinate."""
    width = {"raw": 1, "logsign": 2, "adam": 2, "param": 1, "role": N_ROLES}
    unknown = [f for f in features if f not in width]
    if unknown:
        raise ValueError(f"unknown input feature(s) {unknown}; choose from {list(FEATURES)}")
    return sum(width[f] for f in features)


def feature_state(features: tuple[str, ...], theta: torch.Tensor,
                  roles: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """Zero moments ``(m, v)`` and a step counter when ``adam`` features are used, then the
    role one-hot when ``role`` is."""
    state: tuple[torch.Tensor, ...] = ()
    if "adam" in features:
        z = torch.zeros_like(theta)
        state += (z, z.clone(), torch.zeros((), dtype=theta.dtype, device=theta.device))
    if "role" in features:
        if roles is None:
            raise ValueError("the 'role' feature needs coordinate roles: init(theta, roles)")
        one_hot = torch.nn.functional.one_hot(roles.to(theta.device), N_ROLES).to(theta.dtype)
        state += (one_hot.expand(*theta.shape, N_ROLES),)
    return state


def compute_features(features: tuple[str, ...], g: torch.Tensor, fstate: tuple,
                     p: float = 10.0, raw_scale: float = 1.0,
                     betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                     theta: torch.Tensor | None = None):
    """Stack the requested features of ``g`` along a new last axis; returns ``(x, fstate)``."""
    out = []
    for name in features:
        if name == "raw":
            out.append(g * raw_scale)
        elif name == "logsign":
            absg = g.abs()
            big = absg >= math.exp(-p)
            logm = torch.log(absg.clamp_min(math.exp(-p))) / p
            out.append(torch.where(big, logm, torch.full_like(g, -1.0)))
            out.append(torch.where(big, torch.sign(g), g * math.exp(p)))
        elif name == "param":
            if theta is None:
                raise ValueError("the 'param' feature needs the optimisee: call "
                                 "update(grad, state, theta)")
            out.append(theta)
        elif name == "role":
            out.extend(fstate[-1].unbind(-1))
        elif name == "adam":
            m, v, t = fstate[:3]
            t = t + 1
            m = betas[0] * m + (1 - betas[0]) * g
            v = betas[1] * v + (1 - betas[1]) * g * g
            m_hat = m / (1 - betas[0] ** t)
            v_hat = v / (1 - betas[1] ** t)
            denom = torch.sqrt(v_hat + eps * eps)  # sqrt(v + eps^2): finite derivative at v = 0
            out.append(m_hat / denom)
            out.append(g / denom)
            fstate = (m, v, t) + tuple(fstate[3:])
    return torch.stack(out, dim=-1), fstate
