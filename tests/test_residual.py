"""Residual learned rules (lft+adam, lft+sgd, lft+signsgd), the Scheduled rule, per-budget tuning
and the budgets artefact."""

import json

import pytest
import torch

from lft import checkpoint
from lft.cli import main
from lft.experiments import budgets
from lft.finetuner import FineTuner
from lft.meta import MetaTrainer, Method, TrainConfig, preset
from lft.meta.evaluate import tune_learning_rate, tune_per_budget, validation_losses
from lft.meta.learners import find_base_lr, with_base_lr, with_lstm_options
from lft.rules import Adam, Scheduled, build
from lft.seeding import generator
from lft.tasks import SineFamily


def test_scheduled_starts_as_its_base_and_scales_per_step_and_role():
    rule = Scheduled({"type": "sgd", "lr": 0.1}, steps=2, per_role=True, gain=1.0)
    theta = torch.zeros(2, 4)
    roles = torch.tensor([0, 1, 4, 5])
    g = torch.ones(2, 4)
    state = rule.init(theta, roles)
    d1, state = rule.update(g, state, theta)
    assert torch.equal(d1, -0.1 * g)  # s = 0: exactly the base
    with torch.no_grad():
        rule.log_scale[1] = torch.log(torch.arange(1.0, 7.0))  # step 2: factor role + 1
    d2, state = rule.update(g, state, theta)
    assert torch.allclose(d2, -0.1 * (roles + 1.0).expand(2, 4))
    d3, _ = rule.update(g, state, theta)  # past the schedule: the last row again
    assert torch.equal(d3, d2)


def test_scheduled_rebuilds_from_its_config_and_gets_a_meta_gradient():
    rule = build({"type": "scheduled", "rule": {"type": "adam", "lr": 0.01}, "steps": 3})
    again = build(rule.config())
    assert again.config() == rule.config() and isinstance(again.base, Adam)
    theta = torch.randn(5)
    state = rule.init(theta, torch.zeros(5, dtype=torch.long))
    delta, _ = rule.update(torch.randn(5), state, theta)
    delta.sum().backward()
    assert rule.log_scale.grad is not None and rule.log_scale.grad[0, 0] != 0
    with pytest.raises(ValueError, match="roles"):
        rule.init(theta)
    with pytest.raises(ValueError, match="gain"):
        build({"type": "scheduled", "rule": {"type": "sgd"}, "gain": -1})


@pytest.mark.parametrize("name,base", [("lft+adam", "adam"), ("lft+sgd", "sgd"),
                                       ("lft+signsgd", "signsgd")])
def test_residual_method_starts_as_exactly_its_tuned_base(name, base):
    family = SineFamily()
    cfg = preset(name, base_lr=0.003, horizon=5)
    assert find_base_lr(cfg.rule) == 0.003 and cfg.label == f"FO-{name.upper()}"
    assert cfg.rule["rules"][0]["steps"] == 5
    learned, hand = Method(cfg, family), Method(preset(base, base_lr=0.003), family)
    tasks = family.sample(6, generator(0, "t"))
    a = learned.curve(tasks, 5, generator(0, "run"))["loss"]
    b = hand.curve(tasks, 5, generator(0, "run"))["loss"]
    assert torch.equal(a, b)


def test_residual_meta_training_moves_schedule_and_correction():
    family = SineFamily()
    method = Method(preset("lft+adam", base_lr=0.01, horizon=4), family)
    MetaTrainer(method, family, TrainConfig(iterations=3, meta_batch=2, meta_lr=1e-2)).train(
        progress=False)
    schedule, lstm = method.rule.parts
    assert not torch.equal(schedule.multipliers(), torch.ones_like(schedule.multipliers()))
    assert any(p.abs().sum() > 0 for n, p in lstm.named_parameters() if "head" in n)


def test_rule_helpers_and_bad_base_lr():
    cfg = preset("lft+adam", base_lr=0.002)
    assert find_base_lr(with_base_lr(cfg.rule, 0.02)) == 0.02
    assert with_lstm_options(cfg.rule, {"output_scale": 0.01})["rules"][1]["output_scale"] == 0.01
    assert find_base_lr(preset("lft").rule) is None
    with pytest.raises(ValueError, match="no hand-designed base"):
        preset("lft", base_lr=0.1)
    with pytest.raises(ValueError, match="base learning rate"):
        preset("lft+sgd", base_lr=-1.0)


def test_per_budget_tuning_picks_the_best_rate_at_each_step():
    family, grid = SineFamily(), [0.001, 0.01, 0.1]
    cfg = preset("adam", horizon=5)
    best, scores = tune_per_budget(cfg, family, grid, [1, 5], n_tasks=8)
    losses = validation_losses(cfg, family, grid, steps=5, n_tasks=8)
    for k in (1, 5):
        want = min(grid, key=lambda lr: float(losses[lr][:, k].mean()))
        assert best[k] == want and scores["loss_at_k"][k][want] == min(
            scores["loss_at_k"][k].values())
    auc_best, _ = tune_learning_rate(cfg, family, grid, steps=5, n_tasks=8)
    assert scores["best_auc"] == auc_best


def test_widened_tuning_brackets_a_best_rate_beyond_the_grid():
    # on sine, Adam's best rate after 5 steps is far above 1e-4: a grid [1e-5, 1e-4] puts it
    # on the top edge, and widening doubles past it until the best is interior
    family, grid, cfg = SineFamily(), [1e-5, 1e-4], preset("adam", horizon=5)
    best, scores = tune_learning_rate(cfg, family, grid, steps=5, n_tasks=8)
    assert best == 1e-4 and sorted(scores) == grid
    best, scores = tune_learning_rate(cfg, family, grid, steps=5, n_tasks=8, widen=2)
    assert sorted(scores) == [1e-5, 1e-4, 2e-4, 4e-4] and best == 4e-4  # still rising: capped
    best, scores = tune_learning_rate(cfg, family, grid, steps=5, n_tasks=8, widen=12)
    rates = sorted(scores)
    assert rates[0] == 1e-5 and rates[1:] == [1e-4 * 2 ** i for i in range(len(rates) - 1)]
    assert rates[0] < best < rates[-1] and len(rates) < 2 + 12  # interior, so it stopped
    # the added rates see the same tasks and starts as the grid's
    again, _ = tune_learning_rate(cfg, family, rates, steps=5, n_tasks=8)
    assert again == best
    per, more = tune_per_budget(cfg, family, grid, [1, 5], n_tasks=8, widen=12)
    for k in (1, 5):
        rates = sorted(more["loss_at_k"][k])
        assert rates[0] < per[k] < rates[-1]
    with pytest.raises(ValueError, match="widen"):
        tune_learning_rate(cfg, family, grid, steps=5, n_tasks=8, widen=-1)


def test_cli_trains_a_residual_rule_and_the_fine_tuner_applies_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--task", "sine", "--method", "lft+adam", "--base-lr", "0.02",
                 "--iterations", "2", "--meta-batch", "2", "--horizon", "3", "--out", str(out),
                 "--quiet"]) == 0
    meta = json.loads((out / "config.json").read_text())
    assert find_base_lr(meta["method"]["rule"]) == 0.02
    ft = FineTuner.load(out / "checkpoint.safetensors")
    tensors, _ = checkpoint.read(out / "checkpoint.safetensors")
    schedule = ft.rule.parts[0]
    assert isinstance(schedule, Scheduled)
    assert torch.equal(schedule.log_scale, tensors["rule.parts.0.log_scale"])
    assert not torch.equal(schedule.multipliers(), torch.ones_like(schedule.multipliers()))
    model = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    x = torch.linspace(-3, 3, 10)[:, None]
    opt = ft.optimizer(model.named_parameters())
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), torch.sin(x)).backward()
        opt.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert main(["train", "--task", "sine", "--method", "lft", "--base-lr", "0.1",
                 "--out", str(tmp_path / "x")]) == 2
    assert "--base-lr" in capsys.readouterr().err


def test_budgets_quick_profile_writes_paired_rows(tmp_path, data_dir):
    doc = budgets.reproduce("quick", out=tmp_path, data_dir=str(data_dir), progress=False,
                            profile_overrides={"test_tasks": 6, "tune_tasks": 4,
                                               "grid": [0.002, 0.008], "budgets": [1, 3]})
    rows = doc["rows"]
    vs = [r for r in rows if r.get("versus") == "adam"]
    seeds = {r["meta_seed"] for r in vs}
    assert seeds == {0, 1}
    # every learned rule, seed, test source, budget and metric has one paired row
    assert len(vs) == 4 * 2 * 2 * 2  # (mnist, cifar10, mix x 2 tests) x seeds x k x metrics
    adam = [r for r in rows if r["method"] == "adam"]
    assert {(r["test_source"], r["step"]) for r in adam} == {
        (s, k) for s in ("mnist", "cifar10") for k in (1, 3)}
    assert all("tuned for step" in r["note"] and r["queries"] == 10 * r["step"] for r in adam)
    tuning = doc["config"]["tuning"]
    for r in adam:
        assert f"lr={tuning[r['test_source']]['best'][str(r['step'])]:g}" in r["note"]
    assert all(r["ci95"] is not None for r in vs)
    assert (tmp_path / "budgets.md").read_text().count("lft+adam [") >= 8
    assert (tmp_path / "budgets.png").stat().st_size > 0


def test_budgets_schedule_variants_are_chosen_per_budget_on_meta_training_tasks(tmp_path,
                                                                              data_dir):
    """With ``schedule_variants`` one rule per variant and seed is meta-trained; each budget
    reports the variant with the best mean accuracy on meta-training (select) tasks, and
    exactly one variant's paired rows are ``selected`` at each step."""
    fast = [[2.0] * 6] * 3
    doc = budgets.reproduce("quick", out=tmp_path, data_dir=str(data_dir), progress=False,
                            profile_overrides={
                                "test_tasks": 4, "tune_tasks": 4, "select_tasks": 3,
                                "grid": [0.002, 0.008], "budgets": [1, 3], "train": ["cifar10"],
                                "schedule_variants": {"cifar10": {"flat": None, "fast": fast}}})
    vs = [r for r in doc["rows"] if r.get("versus") == "adam"]
    assert {r["variant"] for r in vs} == {"flat", "fast"}
    assert len(vs) == 2 * 2 * 2 * 2  # variants x seeds x k x metrics
    [choice] = doc["config"]["variant_choice"]
    for k in ("1", "3"):
        acc = {v: a[k] for v, a in choice["select_accuracy"].items()}
        assert choice["chosen"][k] == max(acc, key=acc.get)
        picked = {r["variant"] for r in vs if r["selected"] and str(r["step"]) == k}
        assert picked == {choice["chosen"][k]}
    jobs = [j for j in doc["config"]["jobs"] if j.get("variant")]
    assert len(jobs) == 4 and all(j["select_tasks"] == 3 for j in jobs)
    fast_jobs = [j for j in jobs if j["variant"] == "fast"]
    assert all(j["method"]["rule"]["rules"][0]["init"] == fast for j in fast_jobs)
    assert "Chosen per budget" in (tmp_path / "budgets.md").read_text()


def test_choose_variants_takes_the_best_mean_over_seeds_at_each_step():
    from lft.meta.evaluate import Curve

    def acc(*values):  # two tasks, steps 0, 1, 2
        return {"accuracy": Curve("accuracy", torch.tensor([list(values)] * 2), [0, 1, 2])}

    select = {("c", "c", "a", 0): acc(0.5, 0.9, 0.5), ("c", "c", "a", 1): acc(0.5, 0.5, 0.5),
              ("c", "c", "b", 0): acc(0.5, 0.6, 0.8), ("c", "c", "b", 1): acc(0.5, 0.6, 0.8)}
    got = budgets.choose_variants(select, [1, 2])[("c", "c")]
    assert got["chosen"] == {1: "a", 2: "b"}  # a: 0.7 vs 0.6 at step 1; b at step 2
    assert got["accuracy"]["a"][1] == pytest.approx(0.7)


def test_budgets_profile_refuses_a_source_with_both_a_start_and_variants():
    import dataclasses

    from lft.experiments.budgets_spec import PROFILES

    with pytest.raises(ValueError, match="both a schedule_init and schedule_variants"):
        dataclasses.replace(PROFILES["paper-head"], schedule_variants={"cifar10": {"a": None}})
    with pytest.raises(ValueError, match="names no variant"):
        dataclasses.replace(PROFILES["paper"], schedule_variants={"cifar10": {}})
    assert PROFILES["paper-per-k"].schedule_variants["cifar10"]["flat"] is None


def test_packaging_reads_one_meta_seed_and_skips_paired_rows(tmp_path):
    from lft.pretrained.package import reported_from_results

    row = {"method": "lft+adam", "oracle": "fo", "train_source": "mnist", "test_source": "mnist",
           "metric": "accuracy", "n": 5}
    rows = [{**row, "step": k, "mean": 0.5 + s / 10, "ci95": 0.1, "meta_seed": s}
            for s in (0, 1) for k in (0, 1)]
    rows += [{**row, "step": 1, "mean": 0.01, "ci95": 0.02, "versus": "adam", "meta_seed": 1}]
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"artefact": "budgets", "profile": "paper", "seed": 0,
                                "rows": rows}))
    with pytest.raises(ValueError, match="--meta-seed"):
        reported_from_results(path, "lft+adam", "fo")
    got = reported_from_results(path, "lft+adam", "fo", meta_seed=1)
    assert got["values"]["accuracy"] == {"0": [0.6, 0.1], "1": [0.6, 0.1]}


def test_packaging_reads_one_estimators_rows(tmp_path):
    from lft.pretrained.package import reported_from_results

    row = {"method": "lft", "oracle": "zo", "train_source": "sine", "test_source": "sine",
           "metric": "mse", "n": 5, "step": 1, "ci95": 0.1}
    rows = [{**row, "mean": 1.0, "estimator": "history"},
            {**row, "mean": 2.0, "estimator": "gaussian"}]
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"artefact": "figure4", "profile": "paper", "seed": 0,
                                "rows": rows}))
    with pytest.raises(ValueError, match="--estimator"):
        reported_from_results(path, "lft", "zo")
    got = reported_from_results(path, "lft", "zo", estimator="gaussian")
    assert got["values"]["mse"] == {"1": [2.0, 0.1]}


def test_a_schedule_can_start_from_given_multipliers():
    from lft.rules import build

    base = {"type": "adam", "lr": 0.001}
    rule = build({"type": "scheduled", "rule": base, "steps": 3, "init": [4, 2, 1]})
    assert torch.allclose(rule.multipliers()[:, 0], torch.tensor([4.0, 2.0, 1.0]))
    assert build(rule.config()).config() == rule.config()
    plain = build({"type": "scheduled", "rule": base, "steps": 3})
    assert "init" not in plain.config()  # configurations from before the option are unchanged
    theta, roles = torch.zeros(2, 5), torch.zeros(5, dtype=torch.long)
    grad = torch.randn(2, 5)
    ds, s1 = rule.update(grad, rule.init(theta, roles), theta)
    d0, _ = plain.update(grad, plain.init(theta, roles), theta)
    assert torch.allclose(ds, 4 * d0)
    for bad in ([1, 2], [1, 0, 1], "x"):
        with pytest.raises(ValueError, match="init"):
            build({"type": "scheduled", "rule": base, "steps": 3, "init": bad})


def test_a_schedule_can_start_per_role():
    """``init`` rows of one multiplier per role: e.g. larger steps for the last layer's roles
    (4 and 5) from the first step; round-trips, and a bad row is refused."""
    from lft.rules import build
    from lft.rules.features import N_ROLES

    base = {"type": "sgd", "lr": 0.1}
    rows = [[1.0] * 4 + [10.0, 10.0], [2.0] * N_ROLES]
    rule = build({"type": "scheduled", "rule": base, "steps": 2, "init": rows})
    assert torch.allclose(rule.multipliers(), torch.tensor(rows))
    assert build(rule.config()).config() == rule.config()
    theta = torch.zeros(6)
    roles = torch.arange(6)
    d, state = rule.update(torch.ones(6), rule.init(theta, roles), theta)
    assert torch.allclose(d, -0.1 * torch.tensor(rows[0]))
    d, _ = rule.update(torch.ones(6), state, theta)
    assert torch.allclose(d, -0.1 * torch.tensor(rows[1]))
    for bad in ([[1.0] * 5, [1.0] * 6], [[1.0] * 6, 1.0], [[1.0] * 5 + [0.0]] * 2):
        with pytest.raises(ValueError, match="init"):
            build({"type": "scheduled", "rule": base, "steps": 2, "init": bad})
    with pytest.raises(ValueError, match="per_role"):
        build({"type": "scheduled", "rule": base, "steps": 2, "init": rows, "per_role": False})
