"""Table 1's machinery: sparse metric recording, exact steps to 75% ASR, the lambda selection,
and the victim's fast input gradient."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lft import SineFamily
from lft.attacks import load_victim
from lft.experiments.results import curve_rows
from lft.experiments.table1 import select_lambda
from lft.experiments.table1_costs import SETUP_S, makespan_s
from lft.experiments.table1_eval import evaluate_uap
from lft.meta import Method, evaluate, preset, tune_learning_rate
from lft.meta.evaluate import sparse_steps
from lft.models.lenet import InputGradConv2d
from lft.seeding import generator
from lft.tasks import UAPFamily
from lft.tasks.uap import steps_to_asr
from lft.tasks.victims import flush_denormals_

torch.set_num_threads(1)
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not (SHARED / "mnist").is_dir(),
                                reason=f"no offline data copies at {SHARED}")


# ------------------------------------------------------------------ sparse recording

def test_sparse_steps():
    assert sparse_steps(12, every=5, dense=2) == [0, 1, 2, 5, 10, 12]
    assert sparse_steps(200)[:12] == list(range(11)) + [15] and sparse_steps(200)[-1] == 200
    assert sparse_steps(3, every=5, dense=10) == [0, 1, 2, 3]


def test_recorded_steps_equal_the_full_curve_there():
    fam = SineFamily()
    for cfg in (preset("adam", rule={"lr": 0.03}), preset("lft")):  # a hand and a learned rule
        method = Method(cfg, fam)
        kw = {"n_tasks": 7, "steps": 12, "seed": 3, "chunk": 4, "progress": False}
        full = evaluate(method, fam, **kw)
        record = [12, 0, 5, 1, 5]  # any order, repeats ignored
        sparse = evaluate(method, fam, record=record, **kw)
        for name, curve in full.items():
            assert sparse[name].steps == [0, 1, 5, 12] and curve.steps is None
            assert torch.equal(sparse[name].values, curve.values[:, [0, 1, 5, 12]]), name
    rows = curve_rows(sparse["mse"], "adam", "fo", "sine", "sine")
    assert [r["step"] for r in rows] == [0, 1, 5, 12]
    tasks = fam.sample(3, torch.Generator().manual_seed(0))
    one = method.curve(tasks, 4, torch.Generator().manual_seed(1), "val", [4])
    assert one["mse"].shape == (3, 1)
    for bad in ([13], [-1], [], [1.5]):
        with pytest.raises(ValueError, match="record"):
            evaluate(method, fam, record=bad, **kw)


def test_tuning_on_recorded_steps():
    fam, grid = SineFamily(), [0.01, 0.1]
    cfg = preset("sgd")
    assert tune_learning_rate(cfg, fam, grid, steps=6, n_tasks=5) == \
        tune_learning_rate(cfg, fam, grid, steps=6, n_tasks=5, record=range(7))
    best, scores = tune_learning_rate(cfg, fam, grid, steps=6, n_tasks=5, record=[0, 3, 6])
    for lr in grid:  # the mean validation loss over the recorded steps after the start
        method = Method(preset("sgd", rule={"lr": lr}), fam)
        tasks = fam.sample(5, generator(0, "lr-tuning-tasks"))
        loss = method.curve(tasks, 6, generator(0, "lr-tuning-init"), "val")["loss"]
        assert scores[lr] == pytest.approx(float(loss[:, [3, 6]].mean()), rel=1e-6)


# ------------------------------------------------------------------ exact steps to 75% ASR

@pytest.fixture(scope="module")
def mnist_family(tmp_path_factory):
    folder = tmp_path_factory.getbasetemp() / "quick-victims"
    victim = load_victim("mnist", str(SHARED), quick=True, folder=folder)
    return UAPFamily("mnist", victim=str(victim.path), data_dir=str(SHARED), pool=80, queries=4)


@needs_data
def test_evaluate_uap_curves_and_exact_first_hits(mnist_family):
    method = Method(preset("adam", rule={"lr": 0.03}), mnist_family)
    kw = {"seed": 0, "chunk": 4}
    full = evaluate(method, mnist_family, n_tasks=6, steps=10, progress=False, **kw)
    between = 0  # first hits at steps whose metrics were not recorded
    for threshold in (0.25, 0.5, 0.75):
        curves, hit = evaluate_uap(method, mnist_family, 6, 10, record=[0, 5, 10],
                                   threshold=threshold, **kw)
        for name, curve in curves.items():
            assert torch.equal(curve.values, full[name].values[:, [0, 5, 10]]), name
        expected = steps_to_asr(full["asr"].values, threshold)
        assert torch.equal(torch.isnan(hit), torch.isnan(expected))
        ok = ~torch.isnan(hit)
        assert torch.equal(hit[ok], expected[ok]), (threshold, hit, expected)
        between += sum(k not in (0, 5, 10) for k in hit[ok].tolist())
    assert between > 0
    _, none = evaluate_uap(method, mnist_family, 6, 10, record=[10], threshold=None, **kw)
    assert torch.isnan(none).all()


# ------------------------------------------------------------------ lambda selection

def _tuned(name, source, lam, asr, dist):
    return {"name": name, "source": source, "lam": lam, "val_asr": asr,
            "val_distortion": dist, "lr": 0.01 * lam}


GRID = {0.003: ((0.97, 0.30), (0.99, 0.20)), 0.01: ((0.90, 0.14), (0.97, 0.10)),
        0.03: ((0.80, 0.08), (0.90, 0.06)), 0.1: ((0.50, 0.03), (0.60, 0.02))}
TUNED = [_tuned("adam", s, lam, *v) for lam, vs in GRID.items()
         for s, v in zip(("mnist", "cifar10"), vs)] + [
    _tuned("signsgd", s, lam, 1.0, 0.01) for lam in GRID for s in ("mnist", "cifar10")]


def test_lambda_selection_maximises_asr_within_the_distortion_budget():
    lam, sel = select_lambda(TUNED, {"method": "adam", "max_distortion": 0.15})
    # 0.003 is over budget on MNIST (0.30); of the rest 0.01 has the highest mean ASR
    assert lam == 0.01 and sel["lambda"] == 0.01 and sel["within_budget"] == [0.01, 0.03, 0.1]
    assert sel["candidates"]["0.01"]["mnist"] == {"asr": 0.9, "distortion": 0.14, "lr": 1e-4}
    assert "0.15" in sel["criterion"] and "meta-training" in sel["criterion"]
    assert select_lambda(TUNED, {"method": "adam", "max_distortion": 0.05})[0] == 0.1
    assert select_lambda(TUNED, {"method": "adam", "max_distortion": 1.0})[0] == 0.003
    lam, sel = select_lambda(TUNED, {"method": "adam", "max_distortion": 0.001})
    assert lam == 0.1 and sel["within_budget"] == []  # none within budget: the largest
    # equal ASR: the larger lambda; another rule's records change nothing
    tied = TUNED + [_tuned("adam", s, 0.02, 0.90, 0.1) for s in ("mnist", "cifar10")]
    tied = [r for r in tied if not (r["name"] == "adam" and r["lam"] == 0.01)]
    tied += [_tuned("adam", "mnist", 0.01, 0.90, 0.1), _tuned("adam", "cifar10", 0.01, 0.90, 0.1)]
    assert select_lambda(tied, {"method": "adam", "max_distortion": 0.15})[0] == 0.02
    assert select_lambda(TUNED, {"method": "signsgd", "max_distortion": 0.15})[0] == 0.1
    with pytest.raises(ValueError, match="tuned 'sgd'"):
        select_lambda(TUNED, {"method": "sgd", "max_distortion": 0.15})


def test_lambda_selection_by_target_asr_takes_the_least_distortion_reaching_it():
    lam, sel = select_lambda(TUNED, {"method": "adam", "min_asr": 0.9})
    # 0.01 is the largest lambda with ASR >= 0.9 on both sources (0.03 has 0.80 on MNIST)
    assert lam == 0.01 and sel["reaching"] == [0.003, 0.01] and "90%" in sel["criterion"]
    assert select_lambda(TUNED, {"method": "adam", "min_asr": 0.5})[0] == 0.1
    lam, sel = select_lambda(TUNED, {"method": "adam", "min_asr": 0.999})
    assert lam == 0.003 and sel["reaching"] == []  # none reaches it: the smallest lambda
    with pytest.raises(ValueError, match="exactly one of"):
        select_lambda(TUNED, {"method": "adam", "min_asr": 0.9, "max_distortion": 0.1})


def test_makespan_deals_longest_first():
    jobs = [SimpleNamespace(estimate_s=s) for s in (3, 5, 3, 4, 3)]
    # each worker first sets up both sources; then longest first to the least loaded:
    # 5 -> A, 4 -> B, 3 -> B (7), 3 -> A (8), 3 -> B (10)
    assert makespan_s(jobs, 2) == pytest.approx(2 * SETUP_S + 10)
    assert makespan_s(jobs, 1) == pytest.approx(2 * SETUP_S + 18)


# ------------------------------------------------------------------ the victim's speed-ups

def test_fast_input_gradient_equals_conv2d_to_second_order():
    torch.manual_seed(0)
    for cin, pad in ((1, 2), (3, 0)):
        ref = nn.Conv2d(cin, 3, 5, padding=pad).double().requires_grad_(False)
        fast = InputGradConv2d(cin, 3, 5, padding=pad).double()
        fast.load_state_dict(ref.state_dict())
        fast.requires_grad_(False)
        x = torch.rand(2, cin, 9, 9, dtype=torch.double, requires_grad=True)
        grads = []
        for m in (ref, fast):
            (g,) = torch.autograd.grad(torch.tanh(m(x)).pow(2).sum(), x, create_graph=True)
            (h,) = torch.autograd.grad((g * torch.cos(x)).sum(), x)
            grads.append((g, h))
        assert torch.allclose(grads[0][0], grads[1][0], atol=1e-12)
        assert torch.allclose(grads[0][1], grads[1][1], atol=1e-12)
    trainable = InputGradConv2d(1, 2, 3)  # weights that train take nn.Conv2d's own path
    trainable(torch.rand(1, 1, 5, 5)).sum().backward()
    assert trainable.weight.grad is not None and trainable.bias.grad is not None


def test_flush_denormals():
    m = nn.Linear(3, 2)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[1e-40, 0.5, -1e-39], [2e-38, -3.0, 0.0]]))
    flush_denormals_(m)
    assert m.weight.tolist() == [[0.0, 0.5, 0.0], [pytest.approx(2e-38), -3.0, 0.0]]
    assert torch.isfinite(m.bias).all()


# ------------------------------------------------------------------ named UAP tasks

def test_named_uap_tasks(tmp_path_factory):
    from lft.tasks import TASKS, build_family, family_config

    assert {"uap-mnist", "uap-cifar10", "uap-mnist+cifar10"} <= set(TASKS)
    one = family_config("uap-mnist", "/data")
    assert one == {"task": "uap", "source": "mnist", "victim": "default", "lam": 0.01,
                   "queries": 10, "ways": 2, "shots": 5, "part": "meta-train",
                   "data_dir": "/data"}
    mix = family_config("uap-mnist+cifar10", queries=3, lam=0.1)
    assert mix["task"] == "mixture"
    assert [(f["source"], f["queries"], f["lam"]) for f in mix["families"]] == [
        ("mnist", 3, 0.1), ("cifar10", 3, 0.1)]
    assert family_config("mnist")["queries"] == 15  # classification unchanged
    with pytest.raises(ValueError, match="unknown task"):
        family_config("uap-svhn")
    if (SHARED / "mnist").is_dir():
        folder = tmp_path_factory.getbasetemp() / "quick-victims"
        victim = load_victim("mnist", str(SHARED), quick=True, folder=folder)
        fam = build_family({**family_config("uap-mnist", str(SHARED)),
                            "victim": str(victim.path), "pool": 60})
        assert isinstance(fam, UAPFamily) and fam.model.dim == 784
