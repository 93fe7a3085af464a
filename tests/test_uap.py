"""Few-shot UAP: victims, the margin loss and metrics, the task family, the attack engine."""

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from lft.attacks import load_victim, read_victim, universal_perturbation, victim_path
from lft.attacks.attack import FixedShape
from lft.meta import MetaTrainer, Method, TrainConfig, evaluate, preset, trajectory
from lft.tasks import MixtureFamily, UAPBatch, UAPFamily, as_groups, build_family, family_config
from lft.tasks.uap import Perturbation, attack_success, cw_margin, project_ball, steps_to_asr

torch.set_num_threads(1)
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(
    not (SHARED / "mnist").is_dir() or not (SHARED / "cifar10").is_dir(),
    reason=f"no offline data copies at {SHARED}")



def linear_victim(weight: torch.Tensor):
    """A victim whose logits are ``flatten(x) @ weight`` (for hand computations)."""
    return lambda x: x.flatten(1) @ weight


# ------------------------------------------------------------------ definitions, by hand

def test_margin_matches_hand_computation():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    # image 0, true class 0: log p_0 - log p_1 = 2 - 1 = 1 (softmax constants cancel)
    # image 1, true class 0: log p_0 - log p_1 = 0 - 3 = -3 -> 0 (already misclassified)
    assert torch.allclose(cw_margin(logits, torch.tensor([0, 0])), torch.tensor([1.0, 0.0]))
    assert torch.allclose(cw_margin(logits, torch.tensor([0, 0]), kappa=0.5),
                          torch.tensor([1.0, -0.5]))
    # true class 2 of image 0: 0 - 2 = -2 -> 0; class 1 of image 1: 3 - 1 = 2
    assert torch.allclose(cw_margin(logits, torch.tensor([2, 1])), torch.tensor([0.0, 2.0]))
    shifted = logits + torch.tensor([[5.0], [-7.0]])
    assert torch.allclose(cw_margin(shifted, torch.tensor([0, 1])),
                          cw_margin(logits, torch.tensor([0, 1])))


def _toy_batch(lam: float) -> tuple[UAPBatch, torch.Tensor]:
    # 2 pixels, 2 classes; logit_c = pixel_c. Images (0.6, 0.2) of class 0, (0.1, 0.5) of class 1.
    victim = linear_victim(torch.eye(2))
    model = Perturbation(victim, (1, 1, 2))
    x = torch.tensor([[[[[0.6, 0.2]]], [[[0.1, 0.5]]]]])  # (B=1, N=2, 1, 1, 2)
    y = torch.tensor([[0, 1]])
    return UAPBatch(model, {s: (x, y) for s in ("train", "val", "test")}, lam=lam), x


def test_uap_loss_is_margin_on_clamped_images_plus_lambda_l2_squared():
    tasks, _ = _toy_batch(lam=0.5)
    delta = torch.tensor([[-0.3, 0.3]])
    # image 0: clamp(0.3, 0.5) -> margin max(0.3 - 0.5, 0) = 0; image 1: clamp(-0.2 -> 0, 0.8)
    # -> margin 0.8 - 0 = 0.8. Mean 0.4, plus 0.5 * (0.09 + 0.09) = 0.09.
    assert torch.allclose(tasks.loss(delta), torch.tensor([0.49]))
    # (B, P, D): each perturbed copy scored on its own
    both = torch.stack([delta, torch.zeros_like(delta)], 1)
    # delta = 0: margins 0.4 and 0.4, mean 0.4, no penalty
    assert torch.allclose(tasks.loss(both), torch.tensor([[0.49, 0.4]]))


def test_asr_and_distortion_definitions():
    tasks, _ = _toy_batch(lam=0.0)
    delta = torch.tensor([[-0.3, 0.3]])
    m = tasks.metrics(delta)
    assert m["asr"].tolist() == [0.5]  # image 0 flips to class 1, image 1 stays class 1
    assert torch.allclose(m["l2"], torch.tensor([math.sqrt(0.18)]))
    assert torch.allclose(m["distortion"], torch.tensor([math.sqrt(0.18) / math.sqrt(2)]))
    assert tasks.metrics(torch.zeros(1, 2))["asr"].tolist() == [0.0]
    assert attack_success(torch.tensor([[[1.0, 0.0], [1.0, 0.0]]]),
                          torch.tensor([[0, 1]])).tolist() == [0.5]


def test_steps_to_asr():
    curves = torch.tensor([[0.0, 0.5, 0.8, 0.9], [0.0, 0.5, 0.5, 0.7], [0.8, 0.0, 0.0, 0.0]])
    out = steps_to_asr(curves, 0.75)
    assert out[0] == 2 and math.isnan(out[1]) and out[2] == 0
    assert math.isnan(steps_to_asr(curves[0], 0.75, max_steps=1))


# ------------------------------------------------------------------ fixed budgets

def _budget_batch(eps=None, norm="2", lam=0.0, b=3, d=12, k=3, n=6) -> UAPBatch:
    """``b`` toy UAP tasks of ``d``-pixel images against a linear ``k``-class victim."""
    g = torch.Generator().manual_seed(0)
    victim = linear_victim(torch.randn(d, k, generator=g))
    x = torch.rand(b, n, 1, 1, d, generator=g)
    y = torch.randint(0, k, (b, n), generator=g)
    return UAPBatch(Perturbation(victim, (1, 1, d), init_scale=0.5),
                    {s: (x, y) for s in ("train", "val", "test")}, lam=lam, eps=eps, norm=norm)


def test_projection_onto_the_l2_and_linf_balls_by_hand():
    theta = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])  # norms 5, 0.5, 0
    l2 = project_ball(theta, 1.0, "2")
    assert torch.allclose(l2, torch.tensor([[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]]))
    linf = project_ball(theta, 0.35, "inf")
    assert torch.allclose(linf, torch.tensor([[0.35, 0.35], [0.3, 0.35], [0.0, 0.0]]))
    # the l2 norm is over the whole perturbation (all C*H*W pixels), one per row
    many = torch.randn(4, 2, 3 * 8 * 8) * 5
    assert torch.allclose(project_ball(many, 2.0).norm(dim=-1), torch.full((4, 2), 2.0))
    # differentiable, also at zero (no NaN from 0/0)
    leaf = theta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(project_ball(leaf, 1.0).sum(), leaf)
    assert torch.isfinite(grad).all() and grad[2].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="norm"):
        project_ball(theta, 1.0, "1")


@pytest.mark.parametrize("norm, eps", [("2", 0.5), ("inf", 0.05)])
def test_start_and_every_step_stay_within_the_budget(norm, eps):
    tasks = _budget_batch(eps, norm)
    size = (lambda t: t.norm(dim=-1)) if norm == "2" else (lambda t: t.abs().amax(-1))
    method = Method(preset("signsgd", base_lr=0.3), FixedShape(tasks.model))
    theta, state = method.start(tasks, torch.Generator().manual_seed(1))
    assert (size(theta) <= eps * (1 + 1e-6)).all()
    assert (size(tasks.model.init(3, torch.Generator().manual_seed(1))) > eps).all()
    sizes = [size(th) for th, _ in trajectory(method.rule, method.oracle, tasks, theta, state,
                                              6, None)]
    assert all((s <= eps * (1 + 1e-6)).all() for s in sizes)
    assert torch.allclose(sizes[-1], torch.full((3,), eps))  # big steps end on the sphere
    merged = tasks.merged()
    assert (merged.eps, merged.norm) == (eps, norm)


def test_without_a_budget_nothing_changes():
    tasks = _budget_batch()
    theta = torch.randn(3, 12) * 100
    assert tasks.project(theta) is theta
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert torch.equal(tasks.init(g1), tasks.model.init(3, g2))


def test_meta_gradient_flows_through_the_projection():
    tasks = _budget_batch(eps=0.3)
    method = Method(preset("lft", horizon=4, rule={"hidden": 4}), FixedShape(tasks.model))
    theta, state = method.start(tasks, torch.Generator().manual_seed(0))
    loss = 0.0
    for theta, state in trajectory(method.rule, method.oracle, tasks, theta, state, 4, None):
        assert (theta.norm(dim=-1) <= 0.3 * (1 + 1e-6)).all()
        loss = loss + tasks.loss(theta, "val").sum()
    grads = torch.autograd.grad(loss, method.meta_parameters(), allow_unused=True)
    flat = torch.cat([g.reshape(-1) for g in grads if g is not None])
    assert torch.isfinite(flat).all() and flat.abs().sum() > 0


def test_budget_options_are_checked_and_kept_in_configurations():
    assert "eps" not in family_config("uap-mnist") and "norm" not in family_config("uap-mnist")
    cfg = family_config("uap-mnist", eps=2.0, norm="inf", lam=0.0)
    assert (cfg["eps"], cfg["norm"], cfg["lam"]) == (2.0, "inf", 0.0)
    mix = family_config("uap-mnist+cifar10", eps=1.5)
    assert [(f["eps"], f["norm"]) for f in mix["families"]] == [(1.5, "2"), (1.5, "2")]
    for kwargs, message in (({"eps": 0.0}, "eps .* must be a finite number > 0.*fix"),
                            ({"eps": float("nan")}, "eps"),
                            ({"eps": 1.0, "norm": "1"}, 'norm must be "2".*fix'),
                            ({"norm": "inf"}, "eps is None.*fix: pass eps")):
        with pytest.raises(ValueError, match=message):
            family_config("uap-mnist", **kwargs)
    with pytest.raises(ValueError, match="UAP tasks only"):
        family_config("mnist", eps=1.0)
    with pytest.raises(ValueError, match="eps"):
        _budget_batch(eps=-1.0)


@needs_data
def test_budgeted_family_config_round_trip(victims):
    plain = UAPFamily("mnist", victim=str(victims["mnist"].path), data_dir=str(SHARED), pool=60,
                      queries=3, lam=0.0)
    assert "eps" not in plain.config() and plain.lam == 0.0
    fam = UAPFamily("mnist", victim=str(victims["mnist"].path), data_dir=str(SHARED), pool=60,
                    queries=3, lam=0.0, eps=1.0, norm="inf")
    assert (fam.config()["eps"], fam.config()["norm"]) == (1.0, "inf")
    assert build_family(fam.config()).config() == fam.config()
    test_part = fam.for_part("meta-test")
    tasks = test_part.sample(2, torch.Generator().manual_seed(0))
    assert (tasks.eps, tasks.norm) == (1.0, "inf")
    same = plain.for_part("meta-test").sample(2, torch.Generator().manual_seed(0))
    assert torch.equal(tasks.data["test"][0], same.data["test"][0])  # a budget draws the same


# ------------------------------------------------------------------ victims

@needs_data
def test_quick_victims_beat_chance_and_round_trip(victims):
    mnist, cifar = victims["mnist"], victims["cifar10"]
    assert mnist.record["clean_test_accuracy"] > 0.6  # chance is 0.1
    assert cifar.record["clean_test_accuracy"] > 0.25
    assert mnist.input_shape == (1, 28, 28) and cifar.input_shape == (3, 32, 32)
    with safe_open(str(mnist.path), framework="pt") as f:
        header = f.metadata()
    record = json.loads(header["record"])
    assert header["format"] == "lft-victim" and record["settings"]["train_subset"] == 10_000
    assert record["data"]["test_images"] == 10_000 and record["quick"] is True
    assert json.loads(mnist.path.with_suffix(".json").read_text()) == record
    again = read_victim(mnist.path)
    x = torch.rand(5, 1, 28, 28)
    assert torch.equal(again(x), mnist(x))


def test_missing_or_foreign_victim_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match="lft victims train mnist --quick"):
        load_victim("mnist", folder=tmp_path, quick=True, train_if_missing=False)
    assert victim_path("mnist", True, tmp_path).name == "lenet5-mnist-quick.safetensors"
    with pytest.raises(ValueError, match="no victim file"):
        read_victim(tmp_path / "none.safetensors")
    bad = tmp_path / "pickle.safetensors"
    bad.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(ValueError, match="not a safetensors victim"):
        read_victim(bad)
    with pytest.raises(ValueError, match="no victim recipe"):
        victim_path("svhn")


# ------------------------------------------------------------------ the task family

@needs_data
def test_uap_family_tasks(victims):
    fam = UAPFamily("mnist", victim=str(victims["mnist"].path), data_dir=str(SHARED), pool=80,
                    queries=4)
    tasks = fam.sample(3, torch.Generator().manual_seed(0))
    (xt, yt), (xv, yv), (xs, ys) = (tasks.data[s] for s in ("train", "val", "test"))
    assert xt.shape == (3, 10, 1, 28, 28) and xv.shape == xs.shape == (3, 8, 1, 28, 28)
    assert tasks.dim == 784 and tasks.roles.shape == (784,)
    for i in range(3):
        assert set(yt[i].tolist()) == set(yv[i].tolist()) == set(tasks.info["classes"][i].tolist())
        assert len(set(yt[i].tolist())) == 2
        assert not any(torch.equal(a, b) for a in xv[i] for b in xs[i])
    zero = torch.zeros(3, 784)
    for split in ("train", "val", "test"):  # only correctly classified images: clean ASR is 0
        assert tasks.metrics(zero, split)["asr"].tolist() == [0.0, 0.0, 0.0]
    theta = tasks.init(torch.Generator().manual_seed(1))
    assert theta.abs().max() <= 0.05 and tasks.loss(theta).shape == (3,)
    assert set(tasks.metrics(theta)) == {"asr", "distortion", "l2", "loss", "margin"}
    merged = tasks.merged()
    assert isinstance(merged, UAPBatch) and merged.data["train"][0].shape[1] == 18
    # meta-train and meta-test tasks draw from disjoint images
    test_fam = fam.for_part("meta-test")
    for a, b in zip(fam._splits, test_fam._splits):
        seen = {bytes(im) for im in a.images}
        assert not any(bytes(im) in seen for im in b.images)
    assert build_family(fam.config()).config() == fam.config()


@needs_data
def test_adam_raises_asr_on_held_out_images(victims):
    fam = UAPFamily("mnist", victim=str(victims["mnist"].path), data_dir=str(SHARED), pool=80,
                    queries=5)
    method = Method(preset("adam", rule={"lr": 0.05}), fam)
    c = evaluate(method, fam, n_tasks=8, steps=12, seed=0, progress=False)
    asr, dist = c["asr"].mean(), c["distortion"].mean()
    assert asr[0] < 0.1 and asr[-1] > 0.6, asr
    assert dist[-1] > dist[0]


@needs_data
def test_mixture_of_mnist_and_cifar_uap_tasks(victims):
    fams = [UAPFamily(s, victim=str(victims[s].path), data_dir=str(SHARED), pool=60, queries=3)
            for s in ("mnist", "cifar10")]
    mix = MixtureFamily(fams)
    groups = as_groups(mix.sample(6, torch.Generator().manual_seed(0)))
    assert sorted(g.dim for g in groups) == [784, 3072]
    method = Method(preset("lft", horizon=3, rule={"hidden": 4}), mix)
    trainer = MetaTrainer(method, mix, TrainConfig(iterations=2, meta_batch=4))
    trainer.train(progress=False)
    assert trainer.stats.updates == 2 and trainer.stats.skipped_nonfinite == 0
    c = evaluate(method, mix, n_tasks=4, steps=2, seed=0, progress=False)
    assert c["asr"].values.shape == (4, 3)
    with pytest.raises(ValueError, match="congruous"):
        Method(preset("maml"), mix)


@needs_data
def test_family_refuses_a_victim_of_another_shape(victims):
    with pytest.raises(ValueError, match="victim .* takes images of shape"):
        UAPFamily("cifar10", victim=str(victims["mnist"].path), data_dir=str(SHARED), pool=30)
    with pytest.raises(ValueError, match="lam"):
        UAPFamily("mnist", victim=str(victims["mnist"].path), lam=float("nan"))


# ------------------------------------------------------------------ the attack engine

def _images(victim, source: str, n_per_class: int, offset: int = 0):
    """Correctly classified test images of classes 3 and 7 (or 'cat' = 3 and 'horse' = 7)."""
    from lft.data import load_source

    split = load_source(source, str(SHARED))["test"]
    xs, ys = [], []
    for c in (3, 7):
        idx = torch.from_numpy((split.labels == c).nonzero()[0])
        x = torch.from_numpy(split.images[idx[:400].numpy()]).permute(0, 3, 1, 2).float() / 255
        ok = victim(x).argmax(-1) == c
        xs.append(x[ok][offset:offset + n_per_class])
        ys += [c] * n_per_class
    return torch.cat(xs), torch.tensor(ys)


@needs_data
def test_black_box_attack_counts_queries_and_raises_asr(victims):
    victim = victims["mnist"]
    x, y = _images(victim, "mnist", 5)
    x_eval, y_eval = _images(victim, "mnist", 20, offset=5)
    fam = FixedShape(Perturbation(victim, (1, 28, 28)))
    method = Method(preset("adam", rule={"lr": 0.05}), fam)
    r = universal_perturbation(victim, x, y, method, steps=25, black_box=True, q=10,
                               x_eval=x_eval, y_eval=y_eval)
    # every step: 2q = 20 loss evaluations (antithetic) of the 10 images, in two batched calls
    # (the +mu and -mu copies); the per-step ASR reports are not counted
    assert r.queries == 25 * 20 * 10 and r.victim_calls == 25 * 2
    assert r.clean_asr == 0.0 and r.eval_clean_asr == 0.0
    assert r.asr[-1] >= 0.5 and r.eval_asr > 0.3, (r.asr, r.eval_asr)
    assert r.delta.shape == (1, 28, 28) and len(r.asr) == 26


def test_attack_refuses_bad_inputs():
    victim = linear_victim(torch.randn(12, 3))
    method = Method(preset("adam"), FixedShape(Perturbation(victim, (3, 2, 2))))
    x, y = torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match="NaN"):
        universal_perturbation(victim, x.clone().fill_(float("nan")), y, method, steps=1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        universal_perturbation(victim, x * 3, y, method, steps=1)
    with pytest.raises(ValueError, match="NaN or infinite logits"):
        universal_perturbation(lambda t: victim(t) * float("nan"), x, y, method, steps=1)
    with pytest.raises(ValueError, match="out of range"):
        universal_perturbation(victim, x, torch.tensor([0, 1, 2, 5]), method, steps=1)
    with pytest.raises(ValueError, match="victim failed on images of shape"):
        universal_perturbation(victim, torch.rand(4, 1, 2, 2), y, method, steps=1)
    with pytest.raises(ValueError, match="--black-box"):
        universal_perturbation(lambda t: torch.from_numpy(victim(t).numpy()), x, y, method,
                               steps=1)


# ------------------------------------------------------------------ the reproduction, tiny

@needs_data
def test_reproduce_table1_tiny(tmp_path):
    from lft.experiments import table1

    tiny = {"pool": 120, "queries": 3, "steps": 3, "truncation": 2, "test_tasks": 3,
            "sweep_tasks": 2, "tune_tasks": 2, "iterations": {"lft": 1, "l2o": 1, "maml": 1},
            "meta_batch": 2, "record": {"dense": 1, "every": 2},
            "lr_grid": {"signsgd": [0.02], "adam": [0.02], "sgd": [1.0]}, "pictures": 1,
            "lams": [0.003, 0.03], "select": {"method": "adam", "max_distortion": 10.0}}
    doc = table1.reproduce("quick", tmp_path, workers=1, progress=False, data_dir=str(SHARED),
                           profile_overrides=tiny)
    rows, config = doc["rows"], doc["config"]
    # every distortion is within the budget of 10: the higher ASR of the two, ties to 0.03
    sel = config["lambda_selection"]
    assert config["lambda"] == sel["lambda"] in (0.003, 0.03)
    assert set(sel["candidates"]) == {"0.003", "0.03"} and sel["within_budget"] == [0.003, 0.03]
    asr = {k: sum(v["asr"] for v in c.values()) for k, c in sel["candidates"].items()}
    assert sel["lambda"] == (0.003 if asr["0.003"] > asr["0.03"] else 0.03)
    assert len(config["tuning"]) == 3 * 2 * 2  # rules x sources x lambdas
    lam, other = sel["lambda"], 0.03 if sel["lambda"] == 0.003 else 0.003
    cells = {(r["train_source"], r["method"], r["test_source"]) for r in rows}
    for train in ("mnist", "mnist+cifar10"):
        assert {(train, m, t) for m in ("lft", "l2o")
                for t in ("mnist", "cifar10", "mnist+cifar10")} <= cells
    assert {("none", b, "mnist+cifar10") for b in ("signsgd", "adam", "sgd")} <= cells
    na = [r for r in rows if r["method"] == "maml" and r["metric"] == "asr" and r["mean"] is None]
    assert {r["test_source"] for r in na} == {"cifar10", "mnist+cifar10"}
    asr_rows = [r for r in rows if r["metric"] == "asr" and r["mean"] is not None]
    assert asr_rows and all(0 <= r["mean"] <= 1 for r in asr_rows)
    adam = [r for r in rows if r["method"] == "adam" and r["test_source"] == "mnist"
            and r["metric"] == "asr"]
    # the chosen lambda at the recorded steps 0, 1, 2, 3 on 3 tasks; the other at 0 and 3 on 2
    assert sorted((r["note"], r["step"], r["n"]) for r in adam) == sorted(
        [(f"lambda={lam:g}", k, 3) for k in (0, 1, 2, 3)]
        + [(f"lambda={other:g}", k, 2) for k in (0, 3)])
    steps = [r for r in rows if r["metric"] == "steps_to_asr75"]
    assert steps and all(r["step"] is None and "reached 75% ASR" in r["note"]
                         and r["note"].startswith(f"lambda={lam:g}") for r in steps)
    table = (tmp_path / "table1.md").read_text()
    assert "[100% / 0.104 / 55]" in table and "Δdistortion" in table
    assert "Lambda selection" in table and f"{lam:g} (chosen)" in table
    for name in ("figure2.png", "figureA1.png", "figure_tradeoff.png", "perturbations.png"):
        assert (tmp_path / name).stat().st_size > 5_000

    # more rows at the run's settings: ZO-LFT on the same test tasks, in a folder of its own
    from lft.experiments import table1_extra

    extra = table1_extra.run(tmp_path, tmp_path / "zo", "lft", "zo", ["mnist+cifar10"],
                             iterations=1, test_tasks=2, q=2, workers=1, progress=False)
    zo = [r for r in extra["rows"] if r["metric"] == "asr" and r["step"] == 3]
    assert {(r["method"], r["oracle"], r["train_source"]) for r in zo} == {
        ("lft", "zo", "mnist+cifar10")}
    assert {r["test_source"]: r["n"] for r in zo} == {"mnist": 2, "cifar10": 2,
                                                       "mnist+cifar10": 4}
    job = extra["config"]["jobs"][0]
    assert job["method"]["oracle"]["q"] == 2 and extra["config"]["lambda"] == lam
    md = (tmp_path / "zo" / "table1_extra.md").read_text()
    assert "ZO-LFT" in md and "FO-LFT (base run)" in md
    assert (tmp_path / "zo" / "checkpoints").is_dir()
    with pytest.raises(FileNotFoundError, match="finished"):
        table1_extra.run(tmp_path / "nothing", tmp_path / "zo2")
