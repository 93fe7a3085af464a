"""The fast paths of the engine compute what the plain ones do.

* the coordinate LSTM's blocked no-grad step (``lstm_inference``) equals its autograd step;
* the autograd step's hand-written, blocked backward (``lstm_cell``) passes ``gradcheck`` and
  ``gradgradcheck`` and leaves ``torch.func`` usable;
* ``FlatModel``'s batched-matmul forward equals ``vmap(functional_call)``, values and grads.
"""

import pytest
import torch

import lft.rules.lstm_cell as lstm_cell
import lft.rules.lstm_inference as lstm_inference
from lft.models import FlatModel, mlp
from lft.rules import build
from lft.rules.features import feature_state
from lft.rules.lstm_cell import LSTMLayerStep

LSTM = {"type": "lstm", "hidden": 5, "layers": 2, "bias": True,
        "features": ["raw", "logsign", "role", "param", "adam"]}


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 7 coordinates, so that a small test crosses block boundaries."""
    monkeypatch.setattr(lstm_cell, "BLOCK", 7)
    monkeypatch.setattr(lstm_inference, "BLOCK", 7)


@pytest.mark.parametrize("roles_shape,bias", [((20,), True), ((3, 20), True), ((20,), False)])
def test_blocked_inference_step_equals_the_autograd_step(small_blocks, roles_shape, bias):
    """Roles shared by the tasks (broadcast one-hot) or per task, runs longer and shorter than
    a block: the role one-hot folded into per-run gate biases changes nothing."""
    torch.manual_seed(0)
    rule = build({**LSTM, "bias": bias}).double()
    theta = torch.randn(3, 20, dtype=torch.float64)
    roles = torch.randint(0, 6, roles_shape)
    roles.view(-1)[:9] = 2  # one run longer than a block
    s_fast, s_graph = rule.init(theta, roles), rule.init(theta, roles)
    for k in range(3):
        g = torch.randn(3, 20, dtype=torch.float64) * 10.0 ** -k
        with torch.no_grad():
            d_fast, s_fast = rule.update(g, s_fast, theta)
        d_graph, s_graph = rule.update(g, s_graph, theta)  # parameters require grad
        assert d_graph.requires_grad and not d_fast.requires_grad
        assert torch.allclose(d_fast, d_graph, rtol=1e-12, atol=1e-14)
        for a, b in zip(s_fast, s_graph):
            assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)


def test_role_runs_cover_every_coordinate_in_order():
    roles = torch.tensor([0, 0, 0, 1, 4, 4, 5])
    one_hot = feature_state(("role",), torch.zeros(2, 7), roles)[-1]  # broadcast over 2 tasks
    runs = lstm_inference.role_runs(one_hot)
    assert runs == [(0, 3, 0), (3, 4, 1), (4, 6, 4), (6, 7, 5),
                    (7, 10, 0), (10, 11, 1), (11, 13, 4), (13, 14, 5)]
    flat = one_hot.reshape(6, -1).argmax(0)
    assert all((flat[a:b] == r).all() for a, b, r in runs)


@pytest.mark.parametrize("bias", [False, True])
def test_layer_step_backward_is_exact_to_second_order(small_blocks, bias):
    torch.manual_seed(1)
    w = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(8, 1, dtype=torch.float64, requires_grad=True) if bias else None
    x = torch.randn(5, 16, dtype=torch.float64, requires_grad=True)
    c = torch.randn(2, 16, dtype=torch.float64, requires_grad=True)

    def step(w, x, c, *b):
        return LSTMLayerStep.apply(w, b[0] if b else None, x, c, 2)

    args = (w, x, c) + ((b,) if bias else ())
    assert torch.autograd.gradcheck(step, args)
    assert torch.autograd.gradcheck(lambda *a: step(*a)[1], args)  # h unused
    assert torch.autograd.gradgradcheck(step, args)


def test_rule_works_under_torch_func():
    torch.manual_seed(2)
    rule = build(LSTM).double()
    theta = torch.randn(9, dtype=torch.float64)
    roles = torch.zeros(9, dtype=torch.long)

    def f(g):
        return rule.update(g, rule.init(theta, roles), theta)[0].pow(2).sum()

    g = torch.randn(9, dtype=torch.float64) * 0.1
    gg = g.clone().requires_grad_()
    (expected,) = torch.autograd.grad(f(gg), gg)
    assert torch.allclose(torch.func.grad(f)(g), expected, rtol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_direct_batched_forward_equals_vmap(dtype):
    torch.manual_seed(3)
    model = FlatModel(mlp([3, 16, 8, 2]))
    assert model._direct is not None
    x = torch.randn(4, 6, 3, dtype=dtype)
    theta = model.init(4, dtype=dtype).requires_grad_(True)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-10}
    direct, vmapped = model(theta, x), model._batched(theta, x)
    assert torch.allclose(direct, vmapped, **tol)
    (g1,) = torch.autograd.grad(direct.pow(2).sum(), theta, create_graph=True)
    (g2,) = torch.autograd.grad(vmapped.pow(2).sum(), theta, create_graph=True)
    assert torch.allclose(g1, g2, **tol)
    (h1,) = torch.autograd.grad(g1.pow(2).sum(), theta)
    (h2,) = torch.autograd.grad(g2.pow(2).sum(), theta)
    assert torch.allclose(h1, h2, **tol)
    perturbed = theta.detach()[:, None] + 0.01 * torch.randn(4, 5, model.dim, dtype=dtype)
    assert torch.allclose(model(perturbed, x), model._batched_perturbed(perturbed, x), **tol)
