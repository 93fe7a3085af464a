"""History-guided, orthogonal and learned zeroth-order oracles against autograd."""

import pytest
import torch
from conftest import quadratic_problem

from lft.oracles import (
    GuidedES,
    HistorySubspace,
    LearnedSampling,
    ZerothOrder,
    build_oracle,
    cosine,
)


@pytest.fixture
def problem():
    return quadratic_problem(12, 8)


def test_history_estimate_is_exact_when_the_gradient_lies_in_the_span(problem):
    loss, theta, true = problem
    oracle = HistorySubspace(q=3, m=2, mu=1e-3, scheme="antithetic")
    memory = torch.stack([true + 0.5 * torch.randn_like(true), true], dim=1)
    est, _ = oracle.estimate(loss, theta, torch.Generator().manual_seed(1), memory)
    assert torch.allclose(est, true, atol=1e-9)
    plain, _ = oracle.estimate(loss, theta, torch.Generator().manual_seed(1), None)
    assert not torch.allclose(plain, true, atol=1e-3)  # a random span is not enough


def test_history_estimate_is_consistent_as_q_reaches_d(problem):
    loss, theta, true = problem
    est = HistorySubspace(q=8, m=0, mu=1e-3, scheme="antithetic")(loss, theta)
    assert torch.allclose(est, true, atol=1e-9)
    fwd = HistorySubspace(q=8, m=0, mu=1e-6)(loss, theta)  # forward differences: O(mu) error
    assert torch.allclose(fwd, true, atol=1e-3)


def linear(c):
    return lambda theta: theta @ c  # exact forward differences, E[u u^T] c is the estimate's mean


def mean_estimate(oracle, c, d, memory=None, n=40000):
    theta = torch.zeros(n, d, dtype=torch.float64)
    mem = None if memory is None else memory.expand(n, *memory.shape[1:])
    est, _ = oracle.estimate(linear(c), theta, torch.Generator().manual_seed(3), mem)
    return est.mean(0)


def test_orthogonal_directions_are_unbiased():
    c = torch.linspace(-1, 1, 6, dtype=torch.float64)
    est = mean_estimate(ZerothOrder(q=2, mu=1e-3, directions="orthogonal"), c, 6)
    assert (est - c).norm() / c.norm() < 0.03
    exact = ZerothOrder(q=6, mu=1e-3, directions="orthogonal")(linear(c), torch.zeros(2, 6,
                                                               dtype=torch.float64))
    assert torch.allclose(exact, c.expand(2, 6), atol=1e-9)  # q = D: a full orthogonal basis


def test_guided_es_is_unbiased_for_its_stretched_gradient():
    d, alpha = 6, 0.5
    c = torch.linspace(-1, 1, d, dtype=torch.float64)
    past = torch.zeros(1, 1, d, dtype=torch.float64)
    past[0, 0, 0] = 2.0  # history along the first coordinate
    est = mean_estimate(GuidedES(q=4, k=1, alpha=alpha, mu=1e-3), c, d, past)
    expected = alpha * c.clone()
    expected[0] += (1 - alpha) * d * c[0]
    assert (est - expected).norm() / expected.norm() < 0.03
    plain = mean_estimate(GuidedES(q=4, k=1, alpha=1.0, mu=1e-3), c, d, past)
    assert (plain - c).norm() / c.norm() < 0.03  # alpha = 1: the Gaussian estimate


def test_learned_sampling_starts_gaussian_and_is_unbiased_for_its_preconditioned_gradient():
    d = 5
    c = torch.linspace(-1, 1, d, dtype=torch.float64)
    torch.manual_seed(0)  # the network's first layer is drawn at random
    oracle = LearnedSampling(q=3, mu=1e-3).double()
    assert torch.allclose(oracle.sigma(torch.zeros(2, d, dtype=torch.float64), None),
                          torch.ones(2, d, dtype=torch.float64))
    with torch.no_grad():
        oracle.net[2].weight.fill_(1.0)
    memory = torch.tensor([[1.0, 1e-2, 1e-4, 1.0, 1e2]], dtype=torch.float64)
    sigma = oracle.sigma(torch.zeros(1, d, dtype=torch.float64), memory)[0].detach()
    assert sigma.std() > 0.1 and torch.isclose(sigma.pow(2).mean(), torch.tensor(1.0,
                                                                                dtype=sigma.dtype))
    with torch.no_grad():
        est = mean_estimate(oracle, c, d, memory)
    assert (est - sigma ** 2 * c).norm() / (sigma ** 2 * c).norm() < 0.05


def test_the_learned_distribution_gets_a_meta_gradient_through_its_directions():
    oracle = LearnedSampling(q=4, mu=1e-3)
    with torch.no_grad():
        oracle.net[2].weight.fill_(0.5)
    c = torch.linspace(-1, 1, 7)
    memory = torch.rand(2, 7) + 0.1
    est, _ = oracle.estimate(linear(c), torch.zeros(2, 7), torch.Generator().manual_seed(0),
                             memory)
    (est * c).sum().backward()
    grads = [p.grad for p in oracle.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def path_cosines(oracle, steps=40, d=200, q=10, lr=0.02):
    """Mean cosine of the estimate with the gradient along a ZO-SGD path on a quadratic."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(300, d, generator=g, dtype=torch.float64) / 300 ** 0.5
    b = torch.randn(300, generator=g, dtype=torch.float64)
    def loss(th):
        return ((th @ a.T - b) ** 2).sum(-1) / 2

    theta = torch.zeros(4, d, dtype=torch.float64)
    memory, cos = None, []
    for _ in range(steps):
        est, memory = oracle.estimate(loss, theta, g, memory)
        true = (theta @ a.T - b) @ a
        cos.append(cosine(est, true).mean())
        theta = theta - lr * est / est.norm(dim=-1, keepdim=True)
    return float(torch.stack(cos[steps // 2:]).mean())


def test_history_keeps_queries_where_the_gradient_has_been():
    """Along a path the history estimate is far better aligned than random directions at
    the same number of queries (Gaussian: about sqrt(q/D) = 0.22)."""
    gaussian = path_cosines(ZerothOrder(q=10, mu=1e-4))
    history = path_cosines(HistorySubspace(q=10, m=3, mu=1e-4))
    guided = path_cosines(GuidedES(q=10, k=2, mu=1e-4))
    assert gaussian < 0.35
    assert history > 2 * gaussian, (history, gaussian)
    assert guided > gaussian, (guided, gaussian)


@pytest.mark.parametrize("config,queries", [
    ({"type": "history", "q": 20}, 21), ({"type": "guided", "q": 20}, 21),
    ({"type": "learned", "q": 20}, 21), ({"type": "history", "q": 5, "scheme": "antithetic"}, 10),
    ({"type": "zo", "q": 20, "directions": "orthogonal", "scheme": "forward"}, 21)])
def test_every_oracle_states_its_query_budget(config, queries):
    oracle = build_oracle(config)
    assert oracle.queries_per_step == queries
    assert build_oracle(oracle.config()).config() == oracle.config()


@pytest.mark.parametrize("bad,match", [
    ({"type": "history", "q": 3, "m": 3}, "m"), ({"type": "guided", "alpha": 1.5}, "alpha"),
    ({"type": "learned", "beta": 1.0}, "beta"), ({"type": "history", "k": 2}, "unknown"),
    ({"type": "sparse"}, "unknown gradient oracle")])
def test_bad_history_oracle_options_are_clear_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        build_oracle(bad)


def test_too_many_directions_for_the_optimisee_is_a_clear_error():
    with pytest.raises(ValueError, match="do not fit"):
        HistorySubspace(q=10, m=1)(lambda t: t.sum(-1), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="do not fit"):
        ZerothOrder(q=10, directions="orthogonal")(lambda t: t.sum(-1), torch.zeros(2, 4))


def test_a_learned_sampling_distribution_is_meta_trained_with_the_rule_and_checkpointed(tmp_path):
    from lft import checkpoint
    from lft.meta import MetaTrainer, Method, TrainConfig, preset
    from lft.tasks import SineFamily

    family = SineFamily()
    cfg = preset("lft", zo=True, oracle={"type": "learned", "q": 5, "scheme": "forward"},
                 horizon=4)
    method = Method(cfg, family, seed=0)
    names = [n for n, _ in method.named_parameters() if n.startswith("oracle.")]
    assert names and all(any(p is q for q in method.meta_parameters())
                         for n, p in method.named_parameters() if n in names)
    before = {n: p.detach().clone() for n, p in method.named_parameters() if n in names}
    MetaTrainer(method, family, TrainConfig(iterations=3, meta_batch=2, meta_lr=0.05,
                                            log_every=10)).train(progress=False)
    after = dict(method.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in names)
    path = checkpoint.save(tmp_path / "zo.safetensors", method, family)
    loaded, _, _ = checkpoint.load(path)
    for n in names:
        assert torch.equal(dict(loaded.named_parameters())[n], after[n])


@pytest.mark.parametrize("config", [{"type": "zo", "q": 4, "directions": "gaussian",
                                     "scheme": "antithetic"},
                                    {"type": "history", "q": 4, "m": 2}])
def test_the_torch_optim_drop_in_estimates_with_the_same_oracles(config):
    """Two steps of LearnedOptimizer(SGD) in zeroth-order mode move the parameters by exactly
    minus the lft.oracles estimate, history included."""
    from lft.optim import LearnedOptimizer
    from lft.rules import build
    from lft.seeding import derive_seed

    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2).double()  # float64: differences of size mu stay exact
    x, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 2, dtype=torch.float64)
    opt = LearnedOptimizer(layer, build({"type": "sgd", "lr": 1.0}), zeroth_order=True,
                           oracle={**config, "mu": 1e-3}, seed=7)
    oracle, memory = build_oracle({**config, "mu": 1e-3}), None

    def flat_loss(th):  # the same loss, of flat parameters (weight then bias)
        w, b = th[..., :6].unflatten(-1, (2, 3)), th[..., 6:]
        out = torch.einsum("...ij,nj->...ni", w, x) + b[..., None, :]
        return ((out - y) ** 2).mean((-1, -2))

    for t in range(2):
        theta = torch.cat([layer.weight.detach().reshape(-1), layer.bias.detach()])[None]
        gen = torch.Generator().manual_seed(derive_seed(7, f"zo-directions-{t}"))
        est, memory = oracle.estimate(flat_loss, theta, gen, memory)
        opt.step(lambda: ((layer(x) - y) ** 2).mean())
        after = torch.cat([layer.weight.detach().reshape(-1), layer.bias.detach()])[None]
        assert torch.allclose(after, theta - est, atol=1e-9)


def test_queries_per_step_sets_the_budget_from_the_command_line(tmp_path, capsys):
    import json

    from lft.cli import main

    out = tmp_path / "run"
    assert main(["train", "--task", "sine", "--zo", "--queries-per-step", "11", "--estimator",
                 "guided", "--iterations", "2", "--out", str(out), "--quiet"]) == 0
    oracle = json.loads((out / "config.json").read_text())["method"]["oracle"]
    assert oracle["type"] == "guided" and build_oracle(oracle).queries_per_step == 11
    rows = tmp_path / "rows.json"
    assert main(["evaluate", str(out / "checkpoint.safetensors"), "--tasks", "4", "--steps",
                 "3", "--json", str(rows), "--quiet"]) == 0
    assert {(r["step"], r["queries"]) for r in json.loads(rows.read_text())["rows"]} == {
        (k, 11 * k) for k in range(4)}
    for bad, needle in ((["--queries-per-step", "11"], "add --zo"),
                        (["--zo", "--estimator", "history"], "needs --queries-per-step"),
                        (["--zo", "--queries-per-step", "1"], "at least 2")):
        assert main(["train", "--task", "sine", *bad, "--iterations", "1", "--out",
                     str(tmp_path / "x")]) == 2
        assert needle in capsys.readouterr().err
