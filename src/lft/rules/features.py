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

from lft.rules.lstm_cell import transforms_active

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
    role one-hot, channels first (``(N_ROLES, *theta.shape)``, an expanded view), when ``role``
    is."""
    state: tuple[torch.Tensor, ...] = ()
    if "adam" in features:
        z = torch.zeros_like(theta)
        state += (z, z.clone(), torch.zeros((), dtype=theta.dtype, device=theta.device))
    if "role" in features:
        if roles is None:
            raise ValueError("the 'role' feature needs coordinate roles: init(theta, roles)")
        roles = roles.to(theta.device)
        one_hot = torch.nn.functional.one_hot(roles, N_ROLES).to(theta.dtype).movedim(-1, 0)
        one_hot = one_hot.contiguous()  # channel rows contiguous: a fast copy into the inputs
        pad = (1,) * (theta.dim() - roles.dim())
        state += (one_hot.reshape(N_ROLES, *pad, *roles.shape).expand(N_ROLES, *theta.shape),)
    return state


def feature_rows(features: tuple[str, ...], g: torch.Tensor, fstate: tuple,
                 p: float = 10.0, raw_scale: float = 1.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 theta: torch.Tensor | None = None) -> tuple[list[torch.Tensor], tuple]:
    """The requested features of ``g``, channels first: ``([(k_i, *g.shape), ...], fstate)``.

    Channels come in the order of ``features`` (the columns of the rule's input weights); the
    caller concatenates them along the first axis, which is one copy of the inputs.
    """
    # without autograd, intermediates are updated in place (fewer temporaries, same numbers)
    inplace = not transforms_active() and (not torch.is_grad_enabled() or not (
        g.requires_grad or any(t.requires_grad for t in fstate[:2])))
    out: list[torch.Tensor] = []
    for name in features:
        if name == "raw":
            out.append((g * raw_scale).unsqueeze(0))
        elif name == "logsign":
            # (log|g|/p, sign g) if |g| >= e^-p else (-1, e^p g), written branch-free:
            # log(max(|g|, e^-p))/p is -1 below the threshold, and clamp(e^p g, -1, 1) is
            # sign g above it and e^p g below (same values and derivatives, fewer passes)
            if inplace:
                out.append(g.abs().clamp_min_(math.exp(-p)).log_().mul_(1.0 / p).unsqueeze(0))
                out.append(torch.mul(g, math.exp(p)).clamp_(-1.0, 1.0).unsqueeze(0))
            else:
                out.append((torch.log(g.abs().clamp_min(math.exp(-p))) * (1.0 / p)).unsqueeze(0))
                out.append((g * math.exp(p)).clamp(-1.0, 1.0).unsqueeze(0))
        elif name == "param":
            if theta is None:
                raise ValueError("the 'param' feature needs the optimisee: call "
                                 "update(grad, state, theta)")
            out.append(theta.unsqueeze(0))
        elif name == "role":
            out.append(fstate[-1])
        elif name == "adam":
            m, v, t = fstate[:3]
            t = t + 1
            m = torch.lerp(m, g, 1 - betas[0])  # beta1 m + (1 - beta1) g
            # 1/sqrt(v_hat + eps^2): a finite derivative at v = 0
            if inplace:
                v = torch.mul(v, betas[1]).addcmul_(g, g, value=1 - betas[1])
                inv = torch.div(v, 1 - betas[1] ** t).add_(eps * eps).rsqrt_()
                out.append(torch.mul(m, inv).div_(1 - betas[0] ** t).unsqueeze(0))
            else:
                v = torch.addcmul(betas[1] * v, g, g, value=1 - betas[1])
                inv = torch.rsqrt(v / (1 - betas[1] ** t) + eps * eps)
                out.append((m * inv / (1 - betas[0] ** t)).unsqueeze(0))
            out.append((g * inv).unsqueeze(0))
            fstate = (m, v, t) + tuple(fstate[3:])
    return out, fstate


def compute_features(features: tuple[str, ...], g: torch.Tensor, fstate: tuple, **kwargs):
    """Stack the requested features of ``g`` along a new last axis; returns ``(x, fstate)``."""
    rows, fstate = feature_rows(features, g, fstate, **kwargs)
    return torch.cat(rows, dim=0).movedim(0, -1), fstate
