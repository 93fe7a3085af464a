"""The fitted-subspace oracle: exact projections, fitting, files and checkpoints."""

import pytest
import torch
from conftest import quadratic_problem

from lft.oracles import FittedSubspace, build_oracle, fit_basis, load_basis, save_basis


def orthonormal(q, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(d, q, generator=g, dtype=torch.float64)).Q.T


def oracle_with(basis, **kw):
    oracle = FittedSubspace(q=basis.shape[0], dim=basis.shape[1], **kw).double()
    oracle.set_basis(basis)
    return oracle


def test_the_estimate_is_the_gradients_projection_onto_the_basis():
    loss, theta, true = quadratic_problem(12, 8)
    basis = orthonormal(3, 8)
    est = oracle_with(basis, mu=1e-3, scheme="antithetic")(loss, theta)
    assert torch.allclose(est, true @ basis.T @ basis, atol=1e-9)  # exact on quadratics


def test_the_estimate_is_exact_when_the_gradient_lies_in_the_span():
    loss, theta, true = quadratic_problem(12, 8)
    basis = torch.cat([true[:1] / true[0].norm(), orthonormal(2, 8, 1)[:1]])
    est = oracle_with(basis, mu=1e-3, scheme="antithetic")(loss, theta[:1])
    assert torch.allclose(est, true[:1], atol=1e-9)
    assert oracle_with(basis).queries_per_step == 3  # forward differences: q + 1


def test_fit_basis_finds_the_span_the_gradients_share():
    span = orthonormal(3, 30, 2)
    g = torch.randn(200, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    grads = (g @ span) * torch.rand(200, 1, dtype=torch.float64) * 100  # scale is ignored
    basis = fit_basis(grads, 3).double()
    assert torch.allclose(basis @ basis.T, torch.eye(3, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(span @ basis.T @ basis, span, atol=1e-5)  # same subspace
    with pytest.raises(ValueError, match="at least q = 5"):
        fit_basis(grads[:4], 5)


def test_an_oracle_without_a_basis_or_of_another_size_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no basis yet"):
        FittedSubspace(q=2, dim=4)(lambda t: t.sum(-1), torch.zeros(1, 4))
    oracle = oracle_with(orthonormal(2, 4).float())
    with pytest.raises(ValueError, match="optimisees of 4 parameters, got 5"):
        oracle(lambda t: t.sum(-1), torch.zeros(1, 5))
    with pytest.raises(ValueError, match="q = 2 directions of dim = 4"):
        oracle.set_basis(torch.ones(3, 4))
    with pytest.raises(ValueError, match="no basis file"):
        build_oracle({"type": "subspace", "q": 2, "dim": 4, "basis": str(tmp_path / "x")})
    (tmp_path / "bad.safetensors").write_text("not a tensor file")
    with pytest.raises(ValueError, match="not a readable"):
        load_basis(tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="dim"):
        build_oracle({"type": "subspace", "q": 2})


def test_a_basis_file_round_trips_through_the_configuration(tmp_path):
    basis = orthonormal(2, 6).float()
    path = save_basis(tmp_path / "b.safetensors", basis, {"energy": 0.5})
    oracle = build_oracle({"type": "subspace", "q": 2, "dim": 6, "basis": str(path)})
    assert torch.allclose(oracle.basis, basis, atol=1e-6)
    assert build_oracle(oracle.config()).config() == oracle.config()


def test_fit_subspace_on_meta_training_tasks_and_a_checkpoint_carries_the_basis(tmp_path):
    from lft import checkpoint
    from lft.meta import Method, evaluate, fit_subspace, preset
    from lft.tasks import SineFamily

    family = SineFamily()
    fitted = fit_subspace(tmp_path / "sine.safetensors", preset("sgd", base_lr=0.01), family,
                          q=5, n_tasks=20, steps=4)
    assert 0.0 < fitted["energy"] <= 1.0 + 1e-6
    oracle = fitted["oracle"]
    assert oracle["dim"] == family.model.dim and oracle["q"] == 5
    method = Method(preset("lft", zo=True, oracle=oracle, horizon=4), family)
    curves = evaluate(method, family, n_tasks=4, steps=3, progress=False)
    assert torch.isfinite(curves["loss"].values).all()
    path = checkpoint.save(tmp_path / "zo.safetensors", method, family)
    _, meta = checkpoint.read(path)
    assert meta["method"]["oracle"]["basis"] is None  # no machine path: the weights carry it
    (tmp_path / "sine.safetensors").unlink()
    loaded, _, _ = checkpoint.load(path)
    assert torch.equal(loaded.oracle.basis, method.oracle.basis) and loaded.oracle.fitted


def test_a_budget_takes_the_leading_directions_of_a_basis_file(tmp_path):
    from lft.oracles import at_budget

    path = save_basis(tmp_path / "b.safetensors", orthonormal(6, 10).float())
    config = at_budget("subspace", 4, basis=str(path))
    assert config["q"] == 3 and config["dim"] == 10
    oracle = build_oracle(config)
    assert torch.allclose(oracle.basis, orthonormal(6, 10).float()[:3], atol=1e-6)
    with pytest.raises(ValueError, match="holds 6 directions, fewer than q = 7"):
        at_budget("subspace", 8, basis=str(path))
    with pytest.raises(ValueError, match="needs one"):
        at_budget("subspace", 4)
