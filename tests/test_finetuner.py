"""lft.FineTuner: the README example, torch.optim behaviour, functional form, packaged files."""

import copy
import io
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import lft
from lft import checkpoint
from lft.cli import main
from lft.finetuner import FineTuner
from lft.meta import Method, preset, trajectory
from lft.models.roles import roles_from_names, roles_from_shapes
from lft.oracles import FirstOrder
from lft.tasks import SineFamily, TaskBatch

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    """The code block under the README's 'fine-tune your own model' heading."""
    text = README.read_text()
    section = re.search(r"^##+ Fine-tune your own model.*?```python\n(.*?)```", text,
                        re.S | re.M | re.I)
    assert section, "README has no 'Fine-tune your own model' section with a python block"
    return section.group(1)


def test_readme_example_runs_and_the_loss_decreases():
    code = readme_example()
    assert len([line for line in code.splitlines() if line.strip()]) <= 5
    assert re.search(r"range\(\d+\)", code)

    def run(source):
        torch.manual_seed(0)
        ns: dict = {}
        exec(compile(source, "README.md", "exec"), ns)
        with torch.no_grad():
            return float(nn.functional.mse_loss(ns["model"](ns["x"]), ns["y"]))

    before = run(re.sub(r"range\(\d+\)", "range(0)", code))
    after = run(code)
    assert after < 0.5 * before, (before, after)


def cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def images(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(12, 1, 6, 6, generator=g), torch.randint(0, 3, (12,), generator=g)


def fit(model, opt, steps, x, y):
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def test_optimizer_is_a_torch_optimizer_and_trains_a_cnn():
    torch.manual_seed(0)
    model, (x, y) = cnn(), images()
    opt = FineTuner.load("sine-fo-lft").optimizer(model.parameters())
    assert isinstance(opt, torch.optim.Optimizer)
    losses = fit(model, opt, 15, x, y)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert min(losses[-3:]) < losses[0]
    state = opt.state[next(model.parameters())]
    assert "rule_state" in state and int(state["step"]) == 15


def test_optimizer_matches_the_engine_on_the_sine_model():
    """The same rule on an nn.Module through torch.optim and on FlatModel through the engine."""
    family = SineFamily()
    gen = torch.Generator().manual_seed(3)
    tasks = family.sample(1, gen)
    tasks = TaskBatch(tasks.model, {k: (a.double(), b.double()) for k, (a, b) in
                                    tasks.data.items()})
    theta0 = family.model.init(1, gen).double()
    ft = FineTuner.load("sine-fo-lft")
    rule = copy.deepcopy(ft.rule).double()
    engine = [t for t, _ in trajectory(rule, FirstOrder(), tasks, theta0,
                                       rule.init(theta0, tasks.roles), 5)]
    model = copy.deepcopy(family.model.module).double()
    with torch.no_grad():
        for p, v in zip(model.parameters(), family.model.unflatten(theta0[0]).values()):
            p.copy_(v)
    opt = ft.optimizer(model.named_parameters())
    x, y = tasks.data["train"]
    for k in range(5):
        opt.zero_grad()
        ((model(x[0]) - y[0]) ** 2).mean().backward()
        opt.step()
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        assert torch.allclose(flat, engine[k][0], atol=1e-10, rtol=0)


def test_optimizer_equals_the_functional_form():
    torch.manual_seed(1)
    model, (x, y) = cnn(), images()
    ft = FineTuner.load("sine-fo-lft")
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    state = ft.init(params)
    opt = ft.optimizer(model.named_parameters(), lr_scale=0.5)

    def loss_of(ps):
        return nn.functional.cross_entropy(torch.func.functional_call(model, ps, (x,)), y)

    for _ in range(4):
        grads = torch.func.grad(loss_of)(params)
        params, state = ft.update(grads, state, params, lr_scale=0.5)
        fit(model, opt, 1, x, y)
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), params[n]), n


def test_state_dict_round_trip_continues_bit_identically():
    torch.manual_seed(2)
    model, (x, y) = cnn(), images()
    ft = FineTuner.load("sine-fo-lft")
    opt = ft.optimizer(model.parameters())
    fit(model, opt, 3, x, y)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    fit(model, opt, 4, x, y)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    model2 = cnn()
    model2.load_state_dict(saved["model"])
    opt2 = ft.optimizer(model2.parameters())
    opt2.load_state_dict(saved["opt"])
    fit(model2, opt2, 4, x, y)
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)


def test_roles_match_flatmodel_by_names_and_by_shapes():
    for module in (SineFamily().model.module, cnn()):
        from lft.models import FlatModel
        flat = FlatModel(module)
        per_tensor = [int(flat.roles[sum(flat.numels[:i])]) for i in range(len(flat.numels))]
        assert roles_from_names(flat.names) == per_tensor
        assert roles_from_shapes([tuple(s) for s in flat.shapes]) == per_tensor
    # LayerNorm weight/bias after a Linear bias: a new (middle) layer, then its bias
    assert roles_from_shapes([(8, 4), (8,), (8,), (8,), (2, 8), (2,)]) == [0, 1, 2, 3, 4, 5]


def test_unknown_name_lists_the_available_ones(capsys):
    names = list(FineTuner.list())
    assert {"sine-fo-lft", "sine-zo-lft"} <= set(names)
    assert all(FineTuner.list()[n] for n in names)
    with pytest.raises(ValueError, match="unknown pretrained fine-tuner 'sine-typo'.*sine-fo-lft"):
        FineTuner.load("sine-typo")
    assert main(["evaluate", "sine-typo"]) == 2
    err = capsys.readouterr().err
    assert "sine-fo-lft" in err and "Traceback" not in err


def test_hand_designed_rule_checkpoint_is_refused_clearly(tmp_path):
    family = SineFamily(hidden=(4,))
    maml = Method(preset("maml"), family)
    path = checkpoint.save(tmp_path / "maml.safetensors", maml, family)
    with pytest.raises(checkpoint.CheckpointError, match="no meta-learned update rule"):
        FineTuner.load(path)


def test_lft_plus_init_checkpoint_works_as_an_optimizer(tmp_path):
    family = SineFamily(hidden=(4,))
    method = Method(preset("lft+init"), family)
    path = checkpoint.save(tmp_path / "hybrid.safetensors", method, family)
    ft = FineTuner.load(path)
    torch.manual_seed(0)
    model, (x, y) = cnn(), images()
    losses = fit(model, ft.optimizer(model), 5, x, y)
    assert losses[-1] < losses[0]  # SGD(0.01) plus a zero-initialised LSTM head


def test_zeroth_order_optimizer_needs_a_closure_and_decreases_the_loss():
    torch.manual_seed(0)
    ft = FineTuner.load("sine-zo-lft")
    assert ft.zeroth_order and ft.oracle["q"] == 100
    # the architecture it was meta-trained on; on a small tanh MLP (97 weights, far less
    # estimate noise than the 1 761 it saw) its steps overshoot
    model = nn.Sequential(nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(),
                          nn.Linear(40, 1))
    x = torch.linspace(-3, 3, 10)[:, None]
    y = torch.sin(x)
    opt = ft.optimizer(model.parameters(), q=20)
    with pytest.raises(ValueError, match="closure"):
        opt.step()

    def closure():
        return nn.functional.mse_loss(model(x), y)

    with torch.no_grad():
        first = float(closure())
    for _ in range(15):
        opt.step(closure)
    with torch.no_grad():
        assert float(closure()) < 0.7 * first
    assert all(p.grad is None for p in model.parameters())  # function values only


def test_lft_evaluate_accepts_a_pretrained_name(capsys):
    assert main(["evaluate", "sine-fo-lft", "--tasks", "4", "--steps", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "FO-LFT on sine" in out and "--tasks 500 --steps 20 --seed 0" in out


def test_packaged_files_are_small_lft_checkpoints_with_their_provenance():
    for name in ("sine-fo-lft", "sine-zo-lft"):
        path = lft.pretrained.path(name)
        assert path.stat().st_size < 16_000
        _, meta = checkpoint.read(path)
        entry = meta["extra"]["pretrained"]
        assert entry["command"] == "lft reproduce figure4 --profile paper"
        assert entry["reported"]["evaluate"] == {"tasks": 500, "steps": 20, "seed": 0}
        assert len(entry["reported"]["values"]["mse"]) == 21
    _, meta = checkpoint.read(lft.pretrained.path("uap-fo-lft"))
    entry, family = meta["extra"]["pretrained"], meta["family"]
    assert entry["command"] == "lft reproduce table1 --profile paper"
    assert entry["reported"]["evaluate"] == {"tasks": 500, "steps": 200, "seed": 0}
    assert {f["source"] for f in family["families"]} == {"mnist", "cifar10"}
    asr = entry["reported"]["values"]["asr"]  # Table 1's recorded steps at lambda 0.001
    assert "200" in asr and 0.5 < asr["200"][0] <= 1.0
    _, meta = checkpoint.read(lft.pretrained.path("uap-zo-lft"))
    assert meta["method"]["oracle"]["type"] == "zo" and meta["method"]["oracle"]["q"] == 10
    assert meta["extra"]["pretrained"]["reported"]["evaluate"]["tasks"] == 200


@pytest.mark.slow
def test_lft_evaluate_reproduces_the_reported_figure4_row(capsys):
    """``lft evaluate sine-fo-lft`` re-measures README's FO-LFT row (500 tasks, ~10 s)."""
    assert main(["evaluate", "sine-fo-lft", "--quiet"]) == 0
    assert "reproduced: 21 of 21 steps within the reported 95% CI" in capsys.readouterr().out


def test_evaluate_on_a_named_uap_task_keeps_the_checkpoint_loss_settings():
    """``lft evaluate UAP-CKPT --task uap-mnist`` tests on the lambda it was meta-trained on."""
    from lft.cli.evaluate import _uap_settings
    from lft.tasks import family_config

    mix = family_config("uap-mnist+cifar10", lam=0.003, queries=7)
    assert _uap_settings(mix) == {"lam": 0.003, "queries": 7}
    assert family_config("uap-mnist", **_uap_settings(mix))["lam"] == 0.003
    assert _uap_settings(family_config("mnist+cifar10")) == {}


def test_reported_figures_are_read_from_one_lambda_of_a_results_file(tmp_path):
    """Table 1 rows at the chosen lambda and at the sweep's others share steps: ``note``
    picks one set; without it the ambiguity is an error, not a silent mix."""
    import json

    from lft.pretrained.package import reported_from_results

    def row(step, mean, note, metric="asr"):
        return {"method": "lft", "oracle": "fo", "train_source": "mnist+cifar10",
                "test_source": "mnist", "metric": metric, "step": step, "mean": mean,
                "ci95": 0.01, "n": 500, "note": note}

    rows = [row(0, 0.0, "lambda=0.001"), row(200, 0.9, "lambda=0.001"),
            row(200, 0.5, "lambda=0.01"), row(0, 0.0, "lambda=0.01"),
            row(200, 0.7, "lambda=0.0010"),
            row(None, 40.0, "lambda=0.001; 450 of 500 tasks", "steps_to_asr75")]
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"artefact": "table1", "profile": "paper", "seed": 0,
                                "rows": rows}))
    with pytest.raises(ValueError, match="several"):
        reported_from_results(path, "lft", "fo", test_source="mnist")
    got = reported_from_results(path, "lft", "fo", test_source="mnist", note="lambda=0.01")
    assert got["values"]["asr"] == {"0": [0.0, 0.01], "200": [0.5, 0.01]}
    got = reported_from_results(path, "lft", "fo", test_source="mnist", note="lambda=0.001")
    assert got["values"]["asr"]["200"] == [0.9, 0.01] and got["evaluate"]["steps"] == 200
    assert got["values"]["steps_to_asr75"] == {"None": [40.0, 0.01]}
