"""The outer loop: truncation, skipping non-finite meta-gradients, determinism, methods."""

import math

import pytest
import torch

from lft.meta import MetaTrainer, Method, TrainConfig, evaluate, preset, step_weights
from lft.meta.learners import MethodConfig
from lft.tasks import SineFamily


def small_family():
    return SineFamily(hidden=(8,), test_points=20)


def test_step_weights():
    assert torch.allclose(step_weights("uniform", 4), torch.full((4,), 0.25))
    assert torch.allclose(step_weights("linear", 4), torch.tensor([1, 2, 3, 4.0]) / 10)
    assert torch.equal(step_weights("final", 3), torch.tensor([0, 0, 1.0]))
    with pytest.raises(ValueError):
        step_weights("cubic", 3)


def test_truncation_updates_once_per_window_and_carries_state():
    family = small_family()
    cfg = preset("lft", horizon=10, truncation=3, rule={"hidden": 4})
    trainer = MetaTrainer(Method(cfg, family), family, TrainConfig(iterations=2, meta_batch=2))
    trainer.train(progress=False)
    assert trainer.stats.updates == 2 * math.ceil(10 / 3)


def test_nonfinite_meta_gradient_is_skipped_and_counted():
    family = small_family()
    method = Method(preset("lft", horizon=2, rule={"hidden": 4}), family)
    with torch.no_grad():
        method.rule.head.weight.fill_(float("nan"))
    before = [p.detach().clone() for p in method.meta_parameters()]
    trainer = MetaTrainer(method, family, TrainConfig(iterations=3, meta_batch=2))
    trainer.train(progress=False)
    assert trainer.stats.skipped_nonfinite == 3 and trainer.stats.updates == 0
    for a, b in zip(before, method.meta_parameters()):
        assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())


def train_once(name="lft", zo=False, seed=3):
    family = small_family()
    small = {} if name == "maml" else {"rule": {"hidden": 4}, "horizon": 3}
    method = Method(preset(name, zo=zo, **small), family, seed=seed)
    MetaTrainer(method, family, TrainConfig(iterations=3, meta_batch=2, seed=seed)).train(
        progress=False)
    curve = evaluate(method, family, n_tasks=6, steps=3, seed=seed, progress=False)["mse"]
    return method.state_dict(), curve.values


@pytest.mark.parametrize("name,zo", [("lft", False), ("lft", True), ("maml", False)])
def test_same_seed_same_numbers(name, zo):
    s1, c1 = train_once(name, zo)
    s2, c2 = train_once(name, zo)
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert torch.equal(c1, c2)
    s3, c3 = train_once(name, zo, seed=4)
    assert not torch.equal(c1, c3)


def test_methods_differ_only_in_configuration():
    lft, l2o, maml = preset("lft"), preset("l2o"), preset("maml")
    assert (lft.meta_split, l2o.meta_split) == ("val", "train") and l2o.merge_splits
    assert maml.learn_init and not maml.learn_rule and maml.rule["type"] == "sgd"
    assert preset("lft", zo=True).oracle["type"] == "zo"
    assert MethodConfig.from_dict(lft.to_dict()) == lft
    with pytest.raises(ValueError):
        MethodConfig.from_dict({**lft.to_dict(), "bogus": 1})
    with pytest.raises(ValueError):
        preset("reptile")


def test_l2o_meta_loss_reads_merged_fine_tuning_set():
    family = small_family()
    tasks = family.sample(2, torch.Generator().manual_seed(0))
    merged = Method(preset("l2o"), family).prepare(tasks)
    assert merged.data["train"][0].shape[1] == 20
    assert merged.data["val"][0] is merged.data["train"][0]
    assert Method(preset("lft"), family).prepare(tasks) is tasks


def test_maml_learns_an_initialisation_that_helps():
    family = small_family()
    method = Method(preset("maml"), family)
    before = evaluate(method, family, n_tasks=100, steps=1, seed=9, progress=False)["mse"]
    MetaTrainer(method, family, TrainConfig(iterations=300, meta_batch=10, meta_lr=1e-2)
                ).train(progress=False)
    after = evaluate(method, family, n_tasks=100, steps=1, seed=9, progress=False)["mse"]
    assert after.mean()[1] < 0.7 * before.mean()[1]


def test_test_tasks_are_disjoint_from_meta_training_tasks():
    from lft.seeding import generator
    family = small_family()
    train = family.sample(50, generator(0, "meta-train-tasks")).info["amplitude"]
    test = family.sample(50, generator(0, "test-tasks")).info["amplitude"]
    assert not torch.isin(test, train).any()


def test_warm_start_copies_a_learned_initialisation(tmp_path):
    from lft import checkpoint
    from lft.experiments.runner import warm_start_init
    family = small_family()
    maml = Method(preset("maml"), family, seed=1)
    with torch.no_grad():
        maml.init.theta0.add_(1.0)
    path = checkpoint.save(tmp_path / "maml.safetensors", maml, family)
    hybrid = Method(preset("lft+init"), family, seed=2)
    warm_start_init(hybrid, path)
    assert torch.equal(hybrid.init.theta0, maml.init.theta0)
    with pytest.raises(ValueError, match="learns its initialisation"):
        warm_start_init(Method(preset("lft"), family), path)
