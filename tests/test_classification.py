"""Few-shot image classification tasks on the real MNIST and CIFAR-10 copies."""

from pathlib import Path

import pytest
import torch

from lft import checkpoint
from lft.meta import MetaTrainer, Method, TrainConfig, evaluate, preset
from lft.models import FlatModel, conv4, image_mlp
from lft.tasks import ClassificationFamily

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs = pytest.mark.skipif(not (SHARED / "mnist").is_dir() or not (SHARED / "cifar10").is_dir(),
                           reason=f"no offline data copies at {SHARED}")


def test_models_have_the_paper_shapes():
    assert FlatModel(image_mlp()).dim == 784 * 128 + 128 + 128 * 64 + 64 + 64 * 2 + 2
    out = conv4()(torch.zeros(5, 3, 32, 32))
    assert out.shape == (5, 2)
    with pytest.raises(ValueError):
        conv4(image_size=8)


@needs
@pytest.mark.parametrize("source,model,shape", [("mnist", "mlp", (1, 28, 28)),
                                                ("cifar10", "conv4", (3, 32, 32))])
def test_episodes_shapes_and_splits(source, model, shape):
    fam = ClassificationFamily(source, model, data_dir=str(SHARED))
    tasks = fam.sample(3, torch.Generator().manual_seed(0))
    (xt, yt), (xv, yv), (xs, ys) = (tasks.data[s] for s in ("train", "val", "test"))
    assert xt.shape == (3, 10, *shape) and xv.shape == xs.shape == (3, 30, *shape)
    assert set(yt.unique().tolist()) == {0, 1} and (yv[0].bincount(minlength=2) > 0).all()
    assert not any(torch.equal(a, b) for a in xv[0] for b in xs[0]), "val and test share images"
    theta = tasks.init(torch.Generator().manual_seed(1))
    assert tasks.loss(theta, "train").shape == (3,)
    assert tasks.metrics(theta)["accuracy"].shape == (3,)


@needs
def test_adam_learns_mnist_two_way_tasks_and_test_images_are_held_out():
    fam = ClassificationFamily("mnist", "mlp", data_dir=str(SHARED))
    assert fam.for_part("meta-test")._splits[0].images.shape[0] < fam._splits[0].images.shape[0]
    method = Method(preset("adam", rule={"lr": 0.01}), fam)
    acc = evaluate(method, fam, n_tasks=40, steps=10, seed=0, progress=False)["accuracy"]
    assert acc.mean()[0] < 0.65 and acc.mean()[10] > 0.85


@needs
def test_lft_meta_trains_on_cifar_conv4_and_round_trips(tmp_path):
    fam = ClassificationFamily("cifar10", "conv4", data_dir=str(SHARED), queries=5)
    method = Method(preset("lft", horizon=3, rule={"hidden": 4}), fam)
    trainer = MetaTrainer(method, fam, TrainConfig(iterations=2, meta_batch=2))
    trainer.train(progress=False)
    assert trainer.stats.updates == 2
    path = checkpoint.save(tmp_path / "c.safetensors", method, fam)
    loaded, fam2, _ = checkpoint.load(path)
    assert fam2.config() == fam.config()
    a = evaluate(method, fam, n_tasks=3, steps=2, seed=1, progress=False)["accuracy"].values
    b = evaluate(loaded, fam2, n_tasks=3, steps=2, seed=1, progress=False)["accuracy"].values
    assert torch.equal(a, b)


def test_maml_needs_congruous_tasks_message():
    from lft.tasks.base import TaskFamily

    class Mixed(TaskFamily):
        congruous = False
        name = "mixed"

    with pytest.raises(ValueError, match="congruous"):
        Method(preset("maml"), Mixed())


@needs
def test_incongruous_mixture_meta_trains_one_rule_and_refuses_maml(tmp_path):
    from lft.tasks import MixtureFamily, as_groups
    mix = MixtureFamily([ClassificationFamily("mnist", "mlp", data_dir=str(SHARED), queries=3),
                         ClassificationFamily("cifar10", "conv4", data_dir=str(SHARED),
                                              queries=3)])
    groups = as_groups(mix.sample(8, torch.Generator().manual_seed(0)))
    assert len(groups) == 2 and {g.dim for g in groups} == {108866, 28898}
    assert sum(g.size for g in groups) == 8
    method = Method(preset("lft", horizon=2, rule={"hidden": 4}), mix)
    trainer = MetaTrainer(method, mix, TrainConfig(iterations=2, meta_batch=4))
    trainer.train(progress=False)
    assert trainer.stats.updates == 2
    acc = evaluate(method, mix, n_tasks=6, steps=2, seed=0, progress=False)["accuracy"]
    assert acc.values.shape == (6, 3)
    path = checkpoint.save(tmp_path / "mix.safetensors", method, mix)
    assert checkpoint.load(path)[1].config() == mix.config()
    with pytest.raises(ValueError, match="congruous"):
        Method(preset("maml"), mix)


def test_a_family_keeps_its_subclass_across_parts(data_dir):
    from lft.tasks import ClassificationFamily

    class Mine(ClassificationFamily):
        note = "mine"

    fam = Mine("mnist", data_dir=str(data_dir))
    test = fam.for_part("meta-test")
    assert type(test) is Mine and test.part == "meta-test" and fam.part == "meta-train"
    assert type(test.for_part("meta-train")) is Mine
