"""Hand-designed rules behind the same interface: baselines and MAML's inner loop.

They are written as pure tensor functions, so they are differentiable: MAML back-propagates
through :class:`SGD`, and a learned initialisation can be meta-trained under :class:`Adam`.
"""

from __future__ import annotations

import torch

from lft import validation as v
from lft.rules.base import State, UpdateRule


class SGD(UpdateRule):
    """``delta = -lr * g`` (optionally with heavy-ball momentum)."""

    kind = "sgd"

    def __init__(self, lr: float = 0.01, momentum: float = 0.0):
        super().__init__()
        lr = v.positive("SGD learning rate lr", lr)
        momentum = v.number("SGD momentum", momentum, 0.0, 1.0, high_open=True)
        self.lr, self.momentum = lr, momentum

    def config(self) -> dict:
        return {"type": self.kind, "lr": self.lr, "momentum": self.momentum}

    def init(self, theta: torch.Tensor, roles=None) -> State:
        return (torch.zeros_like(theta),) if self.momentum else ()

    def update(self, grad, state, theta=None):
        if self.momentum:
            buf = self.momentum * state[0] + grad
            return -self.lr * buf, (buf,)
        return -self.lr * grad, ()


class Adam(UpdateRule):
    """Adam with bias correction; ``sqrt(v + eps^2)`` keeps it twice differentiable."""

    kind = "adam"

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8):
        super().__init__()
        self.lr, self.eps = v.positive("Adam learning rate lr", lr), v.positive("Adam eps", eps)
        self.beta1, self.beta2 = (v.number(f"Adam {name}", b, 0.0, 1.0, high_open=True)
                                  for name, b in (("beta1", beta1), ("beta2", beta2)))

    def config(self) -> dict:
        return {"type": self.kind, "lr": self.lr, "beta1": self.beta1, "beta2": self.beta2,
                "eps": self.eps}

    def init(self, theta, roles=None):
        z = torch.zeros_like(theta)
        return (z, z.clone(), torch.zeros((), dtype=theta.dtype, device=theta.device))

    def update(self, grad, state, theta=None):
        m, v, t = state
        t = t + 1
        m = self.beta1 * m + (1 - self.beta1) * grad
        v = self.beta2 * v + (1 - self.beta2) * grad * grad
        m_hat = m / (1 - self.beta1 ** t)
        v_hat = v / (1 - self.beta2 ** t)
        return -self.lr * m_hat / torch.sqrt(v_hat + self.eps ** 2), (m, v, t)


class SignSGD(UpdateRule):
    """``delta = -lr * sign(g)``: the PGD-style signed-gradient step."""

    kind = "signsgd"

    def __init__(self, lr: float = 0.01):
        super().__init__()
        self.lr = v.positive("signSGD step size lr", lr)

    def config(self) -> dict:
        return {"type": self.kind, "lr": self.lr}

    def init(self, theta, roles=None):
        return ()

    def update(self, grad, state, theta=None):
        return -self.lr * torch.sign(grad), ()
