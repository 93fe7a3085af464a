import pytest
import torch

from lft.oracles import FirstOrder, ZerothOrder, build_oracle, cosine


def quadratic(a, b):
    def loss(theta):  # (B, D) -> (B,), (B, P, D) -> (B, P)
        return ((theta @ a.T - b) ** 2).sum(-1) / 2
    return loss


@pytest.fixture
def problem():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 5, generator=g, dtype=torch.float64)
    b = torch.randn(6, generator=g, dtype=torch.float64)
    theta = torch.randn(3, 5, generator=g, dtype=torch.float64)
    true = (theta @ a.T - b) @ a
    return quadratic(a, b), theta, true


@pytest.mark.parametrize("directions", ["gaussian", "rademacher", "sphere"])
@pytest.mark.parametrize("scheme", ["forward", "antithetic"])
def test_zo_estimate_is_unbiased(problem, directions, scheme):
    loss, theta, true = problem
    zo = ZerothOrder(q=20000, mu=1e-4, directions=directions, scheme=scheme)
    est = zo(loss, theta, torch.Generator().manual_seed(1))
    rel = (est - true).norm(dim=-1) / true.norm(dim=-1)
    assert rel.max() < 0.08, rel


def test_zo_sphere_needs_dimension_scale(problem):
    """Without the D factor the sphere estimate would be D times too small: check it is not."""
    loss, theta, true = problem
    est = ZerothOrder(q=20000, mu=1e-4, directions="sphere")(loss, theta,
                                                             torch.Generator().manual_seed(2))
    ratio = est.norm(dim=-1) / true.norm(dim=-1)
    assert ((ratio > 0.85) & (ratio < 1.15)).all(), ratio


def test_zo_few_directions_is_noisy_but_aligned(problem):
    loss, theta, true = problem
    est = ZerothOrder(q=5, mu=1e-4)(loss, theta, torch.Generator().manual_seed(3))
    assert (cosine(est, true) > 0).all()
    assert ZerothOrder(q=5).queries_per_step == 6
    assert ZerothOrder(q=5, scheme="antithetic").queries_per_step == 10


def test_first_order_matches_closed_form(problem):
    loss, theta, true = problem
    assert torch.allclose(FirstOrder()(loss, theta), true)


def test_first_order_keeps_graph_only_when_second_order(problem):
    loss, theta, _ = problem
    theta = theta.clone().requires_grad_(True)
    assert FirstOrder(second_order=True)(loss, theta).requires_grad
    assert not FirstOrder(second_order=False)(loss, theta).requires_grad


def test_zo_is_detached_unless_differentiable(problem):
    loss, theta, _ = problem
    theta = theta.clone().requires_grad_(True)
    assert not ZerothOrder(q=3)(loss, theta).requires_grad
    assert ZerothOrder(q=3, differentiable=True)(loss, theta).requires_grad


@pytest.mark.parametrize("bad", [{"type": "xo"}, {"type": "zo", "q": 0},
                                 {"type": "zo", "mu": -1.0}, {"type": "zo", "scheme": "x"},
                                 {"type": "fo", "order": 2}])
def test_bad_oracle_config_is_a_clear_error(bad):
    with pytest.raises(ValueError):
        build_oracle(bad)
