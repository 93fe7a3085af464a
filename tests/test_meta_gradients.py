"""Meta-gradients by autograd against independent computations (float64)."""

import torch
from conftest import double_tasks
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from lft.meta.unroll import trajectory
from lft.oracles import FirstOrder
from lft.rules import SGD, CoordinateLSTM


class Replay:
    """An oracle that returns recorded gradients: the first-order meta-loss as a function."""

    def __init__(self, grads):
        self.grads, self.i = grads, 0

    def __call__(self, loss_fn, theta, generator=None):
        g = self.grads[self.i]
        self.i += 1
        return g


class Recorder(FirstOrder):
    def __init__(self):
        super().__init__(second_order=False)
        self.grads = []

    def __call__(self, loss_fn, theta, generator=None):
        g = super().__call__(loss_fn, theta, generator)
        self.grads.append(g)
        return g


def meta_loss(rule, oracle, tasks, theta0, steps=3):
    state = rule.init(theta0)
    total = 0.0
    for theta, state in trajectory(rule, oracle, tasks, theta0, state, steps):
        total = total + tasks.loss(theta, "val").sum()
    return total


def fd_gradient(f, vec, eps=1e-6, n=12, seed=0):
    """Central differences along ``n`` random coordinates of ``vec``."""
    idx = torch.randperm(vec.numel(), generator=torch.Generator().manual_seed(seed))[:n]
    out = []
    for i in idx:
        e = torch.zeros_like(vec)
        e[i] = eps
        out.append((f(vec + e) - f(vec - e)) / (2 * eps))
    return idx, torch.stack(out)


def lstm64(seed=0):
    torch.manual_seed(seed)
    # raw features: log/sign has kinks that finite differences straddle
    return CoordinateLSTM(hidden=4, layers=2, features=("raw", "adam"), bias=True,
                          output_scale=0.05).double()


def test_second_order_meta_gradient_matches_finite_differences(small_sine, gen):
    tasks = double_tasks(small_sine.sample(2, gen))
    theta0 = tasks.model.init(2, gen, dtype=torch.float64)
    rule = lstm64()
    oracle = FirstOrder(second_order=True)
    params = list(rule.parameters())
    grads = torch.autograd.grad(meta_loss(rule, oracle, tasks, theta0), params)
    auto = torch.cat([g.reshape(-1) for g in grads])
    base = parameters_to_vector(params).detach()

    def f(vec):
        vector_to_parameters(vec, params)
        with torch.no_grad():
            return meta_loss(rule, oracle, tasks, theta0)

    idx, fd = fd_gradient(f, base)
    vector_to_parameters(base, params)
    assert torch.allclose(auto[idx], fd, rtol=1e-4, atol=1e-7), (auto[idx], fd)


def test_first_order_meta_gradient_is_the_frozen_gradient_derivative(small_sine, gen):
    """Detached gradients: autograd equals finite differences of the loss with g_k replayed."""
    tasks = double_tasks(small_sine.sample(2, gen))
    theta0 = tasks.model.init(2, gen, dtype=torch.float64)
    rule = lstm64(1)
    params = list(rule.parameters())
    rec = Recorder()
    grads = torch.autograd.grad(meta_loss(rule, rec, tasks, theta0), params)
    auto = torch.cat([g.reshape(-1) for g in grads])
    base = parameters_to_vector(params).detach()

    def f(vec):
        vector_to_parameters(vec, params)
        with torch.no_grad():
            return meta_loss(rule, Replay(rec.grads), tasks, theta0)

    idx, fd = fd_gradient(f, base)
    vector_to_parameters(base, params)
    assert torch.allclose(auto[idx], fd, rtol=1e-4, atol=1e-7)

    # ... and it is not the full meta-gradient: the Hessian term matters.
    full = torch.autograd.grad(meta_loss(rule, FirstOrder(True), tasks, theta0), params)
    full = torch.cat([g.reshape(-1) for g in full])
    assert not torch.allclose(full, auto, rtol=1e-3)


def test_maml_meta_gradient_matches_closed_form(small_sine, gen):
    """One SGD step: d L_val(theta0 - a g(theta0)) / d theta0 = (I - a H_tr) grad L_val(theta1)."""
    tasks = double_tasks(small_sine.sample(1, gen))
    alpha = 0.05
    theta0 = tasks.model.init(1, gen, dtype=torch.float64)[0].requires_grad_(True)
    rule = SGD(lr=alpha)
    batch = theta0.expand(1, -1)
    loss = meta_loss(rule, FirstOrder(second_order=True), tasks, batch, steps=1)
    (auto,) = torch.autograd.grad(loss, theta0)

    def tr(th):
        return tasks.loss(th[None], "train")[0]

    def val(th):
        return tasks.loss(th[None], "val")[0]

    th0 = theta0.detach()
    g = torch.func.grad(tr)(th0)
    hess = torch.autograd.functional.hessian(tr, th0)
    theta1 = th0 - alpha * g
    expected = (torch.eye(th0.numel(), dtype=torch.float64) - alpha * hess) @ torch.func.grad(
        val)(theta1)
    assert torch.allclose(auto, expected, rtol=1e-8, atol=1e-10)
    # the first-order MAML approximation drops the Hessian and differs
    (fo,) = torch.autograd.grad(meta_loss(rule, FirstOrder(False), tasks,
                                          theta0.expand(1, -1), steps=1), theta0)
    assert torch.allclose(fo, torch.func.grad(val)(theta1), rtol=1e-8)
    assert not torch.allclose(fo, expected, rtol=1e-3)
