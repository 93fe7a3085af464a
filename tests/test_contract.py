"""Every update rule works on every task family: a contract each new rule or family gets free."""

from pathlib import Path

import pytest
import torch

from lft.meta import MetaTrainer, Method, TrainConfig, preset
from lft.rules import RULES, build, tree_init, tree_update
from lft.tasks import FAMILIES, as_groups, build_family

RULE_CONFIGS = {
    "lstm": {"type": "lstm", "hidden": 4},
    "sgd": {"type": "sgd", "lr": 0.01},
    "adam": {"type": "adam", "lr": 0.01},
    "signsgd": {"type": "signsgd", "lr": 0.01},
    "sum": {"type": "sum", "rules": [{"type": "sgd", "lr": 0.01}, {"type": "lstm", "hidden": 3}]},
    # per_role=False: the contract's shape test gives no roles (a per-role schedule needs them)
    "scheduled": {"type": "scheduled", "rule": {"type": "adam", "lr": 0.01}, "steps": 3,
                  "per_role": False},
}
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SMALL_FAMILIES = {"sine": {"task": "sine", "hidden": [8, 8], "test_points": 20},
                  "classification": {"task": "classification", "source": "mnist",
                                     "model": "mlp", "queries": 3,
                                     "data_dir": str(SHARED_DATA)},
                  "mixture": {"task": "mixture", "families": [
                      {"task": "sine", "hidden": [8], "test_points": 20},
                      {"task": "sine", "hidden": [6, 5], "test_points": 20}]},
                  # the quick MNIST victim: trained (seconds) into the user cache on first use
                  "uap": {"task": "uap", "source": "mnist", "victim": "quick", "pool": 40,
                          "queries": 3, "data_dir": str(SHARED_DATA)}}


def test_every_registered_rule_and_family_is_covered():
    assert set(RULE_CONFIGS) == set(RULES)
    assert set(SMALL_FAMILIES) == set(FAMILIES)


@pytest.mark.parametrize("family_name", sorted(SMALL_FAMILIES))
@pytest.mark.parametrize("rule_name", sorted(RULE_CONFIGS))
def test_rule_fine_tunes_family(rule_name, family_name):
    if family_name in ("classification", "uap") and not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"no MNIST copy at {SHARED_DATA}")
    family = build_family(SMALL_FAMILIES[family_name])
    cfg = preset("lft", rule=RULE_CONFIGS[rule_name],
                 learn_rule=rule_name in ("lstm", "sum", "scheduled"),
                 horizon=3)
    cfg.rule = dict(RULE_CONFIGS[rule_name])
    method = Method(cfg, family)
    groups = as_groups(family.sample(6, torch.Generator().manual_seed(0)))
    assert sum(g.size for g in groups) == 6
    for tasks in groups:
        curve = method.curve(tasks, steps=4, generator=torch.Generator().manual_seed(1))
        for metric in (curve[tasks.primary_metric], curve["loss"]):
            assert metric.shape == (tasks.size, 5)
            assert torch.isfinite(metric).all()
        loss = curve["loss"]
        assert not torch.equal(loss[:, 0], loss[:, -1]), "the rule changed nothing"
    if cfg.learn_rule:
        trainer = MetaTrainer(method, family, TrainConfig(iterations=2, meta_batch=2))
        before = [p.detach().clone() for p in method.meta_parameters()]
        trainer.train(progress=False)
        assert trainer.stats.updates == 2
        assert any(not torch.equal(a, b) for a, b in zip(before, method.meta_parameters()))


@pytest.mark.parametrize("rule_name", sorted(RULE_CONFIGS))
def test_rule_acts_on_any_shape_and_on_dicts(rule_name):
    rule = build(RULE_CONFIGS[rule_name])
    for shape in [(7,), (2, 5), (3, 2, 4)]:
        theta = torch.randn(shape)
        delta, state = rule.update(torch.randn(shape), rule.init(theta))
        assert delta.shape == theta.shape and torch.isfinite(delta).all()
    params = {"w": torch.randn(4, 3), "b": torch.randn(4)}
    grads = {k: torch.randn_like(v) for k, v in params.items()}
    deltas, _ = tree_update(rule, grads, tree_init(rule, params))
    assert {k: v.shape for k, v in deltas.items()} == {k: v.shape for k, v in params.items()}


def test_lstm_is_coordinatewise():
    """Permuting coordinates permutes the update: one rule serves any optimisee size."""
    rule = build({"type": "lstm", "hidden": 5, "layers": 2, "bias": True})
    g = torch.randn(50)
    perm = torch.randperm(50)
    d1, _ = rule.update(g, rule.init(g))
    d2, _ = rule.update(g[perm], rule.init(g))
    assert torch.allclose(d1[perm], d2, atol=1e-6)


def test_hand_designed_rules_match_torch_optim():
    theta = torch.randn(10)
    grads = [torch.randn(10) for _ in range(5)]
    for ours, ref_cls, kw in [(build({"type": "adam", "lr": 0.05}), torch.optim.Adam,
                               {"lr": 0.05, "eps": 1e-8}),
                              (build({"type": "sgd", "lr": 0.1, "momentum": 0.9}),
                               torch.optim.SGD, {"lr": 0.1, "momentum": 0.9})]:
        p = torch.nn.Parameter(theta.clone())
        ref = ref_cls([p], **kw)
        th, state = theta.clone(), ours.init(theta)
        for g in grads:
            p.grad = g.clone()
            ref.step()
            th, state = ours.step(th, g, state)
        assert torch.allclose(th, p.detach(), atol=1e-5), ours


def test_sum_with_zero_head_starts_as_its_hand_designed_part():
    from lft.rules import SGD, Sum
    rule = build({"type": "sum", "rules": [{"type": "sgd", "lr": 0.1},
                                           {"type": "lstm", "hidden": 3, "head_init": 0.0}]})
    g = torch.randn(2, 6)
    delta, state = rule.update(g, rule.init(g))
    assert torch.allclose(delta, -0.1 * g)
    assert build(rule.config()).config() == rule.config()
    assert isinstance(Sum([SGD(0.1)]).parts[0], SGD)


def test_roles_name_weight_and_bias_of_first_middle_last_layers():
    from lft.models import FlatModel, mlp
    roles = FlatModel(mlp([1, 4, 3, 1])).roles
    # first weight (4), first bias (4), middle weight (12), middle bias (3), last w (3), b (1)
    expected = [0] * 4 + [1] * 4 + [2] * 12 + [3] * 3 + [4] * 3 + [5] * 1
    assert roles.tolist() == expected


def test_role_and_param_features_change_the_update():
    rule = build({"type": "lstm", "hidden": 4, "features": ["logsign", "role", "param"],
                  "bias": True})
    g, theta = torch.randn(2, 6), torch.randn(2, 6)
    roles_a, roles_b = torch.zeros(6, dtype=torch.long), torch.full((6,), 5, dtype=torch.long)
    d_a, _ = rule.update(g, rule.init(theta, roles_a), theta)
    d_b, _ = rule.update(g, rule.init(theta, roles_b), theta)
    d_c, _ = rule.update(g, rule.init(theta, roles_a), theta + 1)
    assert not torch.allclose(d_a, d_b) and not torch.allclose(d_a, d_c)
    with pytest.raises(ValueError, match="roles"):
        rule.init(theta)
    with pytest.raises(ValueError, match="optimisee"):
        rule.update(g, rule.init(theta, roles_a))
