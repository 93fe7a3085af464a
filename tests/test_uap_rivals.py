"""IBM ART as a rival (``lft.rivals.art``) and the ``uap-rivals`` artefact's quick profile."""

import ast
import json
import math
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lft.rivals import art as rival
from lft.tasks import UAPBatch, UAPFamily
from lft.tasks.uap import project_ball

torch.set_num_threads(1)
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(
    not (SHARED / "mnist").is_dir() or not (SHARED / "cifar10").is_dir(),
    reason=f"no offline data copies at {SHARED}")
needs_art = pytest.mark.skipif(not rival.available(),
                               reason="IBM ART not installed (pip install -e '.[rivals]')")


def test_rivals_is_a_leaf_package():
    """``lft.rivals`` reads tasks, victims and data, never the engine or the experiments."""
    folder = Path(rival.__file__).parent
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(("lft.meta", "lft.experiments", "lft.cli")), \
                    f"{path.name} imports {name}"


def test_without_art_one_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "art.attacks.evasion", None)  # as if not installed
    monkeypatch.setattr(rival, "_AVAILABLE", [])
    assert rival.available() is False
    with pytest.raises(ImportError, match=r"install the optional extra: pip install -e "
                                          r"'\.\[rivals\]'") as e:
        rival.art_uap(lambda x: x.flatten(1), torch.rand(2, 1, 2, 2), torch.tensor([0, 1]), 1.0)
    assert isinstance(e.value, rival.ARTUnavailable) and len(str(e.value).splitlines()) == 1


@needs_art
def test_our_projection_is_arts():
    from art.utils import projection

    x = (np.random.default_rng(0).standard_normal((5, 3, 8, 8)) * 0.5).astype(np.float32)
    x[0] = 0.0
    for norm, art_norm, eps in (("2", 2, 1.5), ("inf", np.inf, 0.2)):
        ours = project_ball(torch.from_numpy(x).reshape(5, -1), eps, norm).reshape(x.shape)
        np.testing.assert_allclose(ours.numpy(), projection(x, eps, art_norm), rtol=1e-5,
                                   atol=1e-7)


@needs_art
@needs_data
@pytest.mark.parametrize("attacker", ["fgsm", "pgd"])
def test_art_counts_the_images_it_back_propagates(victims, monkeypatch, attacker):
    from art.estimators.classification import PyTorchClassifier

    fam = UAPFamily("mnist", victim=str(victims["mnist"].path), data_dir=str(SHARED), pool=60,
                    queries=3, lam=0.0, eps=2.0)
    tasks = fam.sample(2, torch.Generator().manual_seed(0))
    seen = []  # the images of every loss_gradient call, counted independently
    original = PyTorchClassifier.loss_gradient

    def spy(self, x, y, **kw):
        seen.append(len(x))
        return original(self, x, y, **kw)

    monkeypatch.setattr(PyTorchClassifier, "loss_gradient", spy)
    state = random.getstate()
    r = rival.art_uap_batch(tasks, attacker, max_iter=2, pgd_iter=3, seed=5)
    assert random.getstate() == state  # ART's random image order does not leak
    assert r.deltas.shape == (2, 1, 28, 28) and r.theta.shape == (2, 784)
    assert (r.deltas.flatten(1).norm(dim=-1) <= 2.0 * (1 + 1e-5)).all()
    assert r.queries.sum() == sum(seen) > 0
    if attacker == "pgd":  # pgd_iter back-propagated images per per-image attack
        assert all(q % 3 == 0 for q in r.queries.tolist())
    m = tasks.metrics(r.theta, "test")
    assert m["asr"].shape == (2,) and (m["distortion"] <= 2.0 / 28 * (1 + 1e-5)).all()
    again = rival.art_uap_batch(tasks, attacker, max_iter=2, pgd_iter=3, seed=5)
    assert torch.equal(again.deltas, r.deltas) and torch.equal(again.queries, r.queries)
    with pytest.raises(ValueError, match="attacker"):
        rival.art_uap_batch(tasks, "deepfool")
    with pytest.raises(ValueError, match="no budget"):
        rival.art_uap_batch(UAPBatch(tasks.model, tasks.data, lam=0.0))


def test_choose_eps():
    from lft.experiments.uap_rivals import choose_eps

    assert choose_eps({1.0: 0.2, 2.0: 0.6, 3.0: 0.8, 4.0: 0.95}, [0.5, 0.85]) == (2.0, True)
    assert choose_eps({1.0: 0.1, 2.0: 0.3}, [0.5, 0.85]) == (2.0, False)
    assert choose_eps({1.0: 0.9, 2.0: 1.0}, [0.5, 0.85]) == (1.0, False)


def _check_document(doc: dict, out: Path, with_art: bool) -> None:
    from lft.experiments import uap_rivals

    rows, config = doc["rows"], doc["config"]
    plain = [r for r in rows if r.get("versus") is None]
    versus = [r for r in rows if r.get("versus") is not None]
    expected = {"lft", "lft+signsgd", "pgd", "adam", "sgd"} | (
        set(uap_rivals.ART_METHODS) if with_art else set())
    for source in uap_rivals.SOURCES:
        eps = config["eps"][source]
        assert eps in config["profile"]["eps_grid"][source]
        search = config["eps_search"][source]
        assert search["reference"] == ("art-pgd" if with_art else "pgd")
        assert [s["eps"] for s in search["search"]] == config["profile"]["eps_grid"][source]
        mine = [r for r in plain if r["test_source"] == source]
        assert {r["method"] for r in mine} == expected
        assert {r["metric"] for r in mine} == {"asr", "distortion"}
        for r in mine:  # the budget and the cost on every row
            assert (r["eps"], r["norm"]) == (eps, "2") and r["queries"] is not None
            assert 0 <= r["mean"] <= (1 if r["metric"] == "asr" else eps)
            assert ("meta_seed" in r) == (r["method"] in ("lft", "lft+signsgd"))
            if r["method"].startswith("art-"):
                assert r["step"] is None and r["queries"] > 0 and r["train_source"] == "none"
            else:  # 10 fine-tuning images back-propagated per step
                assert r["queries"] == 10 * r["step"]
        last = config["profile"]["steps"]
        pairs = {(r["method"], r["versus"]) for r in versus if r["test_source"] == source}
        assert ("lft", "lft+signsgd") in pairs and ("lft+signsgd", "pgd") in pairs
        if with_art:
            assert ("lft", "art-pgd") in pairs and ("art-pgd", "art-fgsm") in pairs
        for r in versus:
            assert r["metric"] == "asr" and math.isfinite(r["mean"]) and math.isfinite(r["ci95"])
            if r["method"].startswith("art-"):
                assert r["step"] is None
            elif "equal queries" in r["note"]:  # a fine-tuner at an ART rival's query count
                art = next(a for a in plain if a["method"] == r["versus"]
                           and a["test_source"] == r["test_source"] and a["metric"] == "asr")
                assert r["step"] < last and r["queries"] <= art["queries"]
                assert 10 * (r["step"] + 1) > art["queries"] or r["step"] + 1 not in \
                    config["recorded_steps"]
            else:
                assert r["step"] == last
            assert r["eps"] == config["eps"][r["test_source"]] and r["norm"] == "2"
    per_task = load_file(str(out / "per_task.safetensors"))
    n = config["profile"]["test_tasks"]
    assert per_task["mnist/lft/seed0/asr"].shape == (n, len(config["recorded_steps"]))
    if with_art:
        assert per_task["cifar10/art-pgd/queries"].shape == (n,)
    text = (out / "uap-rivals.md").read_text()
    assert "Paired ASR differences" in text and "wall time per attack" in text
    assert json.loads((out / "results.json").read_text())["artefact"] == "uap-rivals"


@needs_data
def test_quick_profile_writes_schema_rows(tmp_path):
    from lft.experiments import uap_rivals

    doc = uap_rivals.reproduce("quick", tmp_path, progress=False, data_dir=str(SHARED))
    _check_document(doc, tmp_path, rival.available())
    assert doc["config"]["art_installed"] == rival.available()


@needs_data
def test_without_art_the_artefact_says_so_and_skips_art_rows(tmp_path, monkeypatch, capsys):
    from lft.experiments import uap_rivals

    monkeypatch.setattr(rival, "available", lambda: False)
    tiny = {"eps_grid": {"mnist": [2.0, 4.0], "cifar10": [1.0, 3.0]}, "test_tasks": 4,
            "tune_tasks": 2, "steps": 4, "record": {"dense": 1, "every": 2},
            "iterations": {"lft": 1, "residual": 1}, "truncation": 2,
            "lr_grid": {"pgd": [0.03], "adam": [0.03], "sgd": [3.0]}}
    doc = uap_rivals.reproduce("quick", tmp_path, progress=False, data_dir=str(SHARED),
                               profile_overrides=tiny)
    said = [line for line in capsys.readouterr().out.splitlines() if "ART" in line]
    assert len(said) == 1 and "skipped" in said[0] and "pip install -e '.[rivals]'" in said[0]
    _check_document(doc, tmp_path, with_art=False)


def test_uap_rivals_is_a_reproducible_artefact():
    from lft.cli import ARTEFACTS
    from lft.experiments import uap_rivals

    assert "uap-rivals" in ARTEFACTS and uap_rivals.ARTEFACT == "uap-rivals"
    assert {"quick", "paper"} <= set(uap_rivals.PROFILES)
    assert uap_rivals.PROFILES["paper"].meta_seeds == 3
    assert uap_rivals.PROFILES["quick"].meta_seeds == 1


@needs_data
def test_black_box_profile_pairs_zo_lft_with_zo_rivals_at_21_evaluations_per_step(tmp_path):
    from lft.experiments import uap_rivals

    tiny = {"test_tasks": 6, "tune_tasks": 2, "steps": 10, "record": {"dense": 10, "every": 5},
            "eps_grid": {"mnist": [4.0], "cifar10": [2.0]}}
    doc = uap_rivals.reproduce("black-box-quick", tmp_path, progress=False,
                               data_dir=str(SHARED), profile_overrides=tiny)
    rows = doc["rows"]
    assert doc["artefact"] == "uap-rivals" and {r["oracle"] for r in rows} == {"zo"}
    plain = [r for r in rows if not r.get("versus")]
    assert {(r["method"], r["estimator"]) for r in plain} == {
        ("lft", "history"), ("signsgd", "history"), ("signsgd", "gaussian")}
    assert all(r["queries"] == 21 * r["step"] for r in rows)
    assert all(r["images"] == 210 * r["step"] for r in plain if r["method"] == "lft")
    assert {(r["test_source"], r["eps"]) for r in rows} == {("mnist", 4.0), ("cifar10", 2.0)}
    versus = {(r["test_source"], r["versus"], r["versus_estimator"], r["step"])
              for r in rows if r.get("versus")}
    assert versus == {(s, "signsgd/zo", e, k) for s in ("mnist", "cifar10")
                      for e in ("history", "gaussian") for k in (5, 10)}
    assert "ZO-LFT minus" in (tmp_path / "uap-rivals.md").read_text()
    with pytest.raises(ValueError, match="budgets"):
        uap_rivals.reproduce("black-box-quick", tmp_path / "x", progress=False,
                             data_dir=str(SHARED), profile_overrides={"steps": 6})


@needs_data
def test_black_box_subspace_profile_fits_a_basis_per_source_and_runs_a_residual_zo_lft(tmp_path):
    from lft.experiments import uap_rivals
    from lft.oracles import load_basis

    tiny = {"test_tasks": 6, "tune_tasks": 2, "steps": 10, "record": {"dense": 10, "every": 5},
            "eps_grid": {"mnist": [4.0], "cifar10": [2.0]}}
    doc = uap_rivals.reproduce("black-box-subspace-quick", tmp_path, progress=False,
                               data_dir=str(SHARED), profile_overrides=tiny)
    rows = doc["rows"]
    plain = {(r["method"], r["estimator"]) for r in rows if not r.get("versus")}
    assert plain == {("lft+sgd", "subspace"), *((rule, e) for rule in ("signsgd", "sgd")
                                                 for e in ("subspace", "gaussian"))}
    assert all(r["queries"] == 21 * r["step"] for r in rows)
    for source, dim in (("mnist", 784), ("cifar10", 3072)):
        fitted = doc["config"]["subspace"][source]
        assert 0.0 < fitted["energy"] <= 1.0 + 1e-6 and fitted["oracle"]["dim"] == dim
        assert load_basis(tmp_path / "bases" / f"{source}.safetensors").shape == (20, dim)
    versus = {(r["method"], r["versus"], r["versus_estimator"]) for r in rows if r.get("versus")}
    assert ("lft+sgd", "sgd/zo", "subspace") in versus
    assert "ZO-LFT+SGD [subspace] seed 0" in (tmp_path / "uap-rivals.md").read_text()


def test_art_tuning_adds_the_steps_that_bracket_the_best():
    from lft.experiments.uap_rivals_jobs import art_steps_to_add

    def scored(*pairs):
        return [{"setting": {"step_fraction": f, "pgd_iter": 10}, "val_asr": a, "queries": 1.0}
                for f, a in pairs]

    assert art_steps_to_add(scored((0.1, 0.6), (0.25, 0.7), (0.5, 0.65))) == []
    assert art_steps_to_add(scored((0.1, 0.6), (0.25, 0.7), (0.5, 0.75))) == [
        {"step_fraction": 1.0, "pgd_iter": 10}]
    assert art_steps_to_add(scored((0.1, 0.8), (0.25, 0.7))) == [
        {"step_fraction": 0.05, "pgd_iter": 10}]
    assert art_steps_to_add(scored((0.5, 0.8))) == [{"step_fraction": 0.25, "pgd_iter": 10},
                                                     {"step_fraction": 1.0, "pgd_iter": 10}]
    # settings that differ in another entry are not steps of the same attack
    other = [{"setting": {"step_fraction": 1.0, "pgd_iter": 5}, "val_asr": 0.1, "queries": 1.0}]
    assert art_steps_to_add(scored((0.1, 0.6), (0.5, 0.75)) + other) == [
        {"step_fraction": 1.0, "pgd_iter": 10}]


def test_a_profile_weights_the_residual_rules_meta_loss_as_it_says():
    from lft.experiments import uap_rivals
    from lft.experiments.uap_rivals_jobs import learned_config

    final = uap_rivals.PROFILES["paper-kappa-final"]
    assert learned_config("lft+sgd", final, {"sgd": 0.5}).weighting == "final"
    assert learned_config("lft", final, {"sgd": 0.5}).weighting == "uniform"
    kappa = uap_rivals.PROFILES["paper-kappa"]
    assert learned_config("lft+sgd", kappa, {"sgd": 0.5}).weighting == "uniform"
    assert final.to_dict() == {**kappa.to_dict(), "weighting": {"residual": "final"}}


def test_a_black_box_profile_weights_zo_lfts_meta_loss_as_it_says():
    from lft.experiments import uap_rivals
    from lft.experiments.results import resolve_profile
    from lft.experiments.uap_blackbox import learned_config

    sel = {"zo_rivals": {"signsgd/history": {"best": {"5": 0.1, "10": 0.05}}}}
    quick = uap_rivals.PROFILES["black-box-quick"]
    assert learned_config(quick, sel).weighting == "uniform"
    weights = [1.0 if k in (5, 10) else 0.0 for k in range(1, quick.steps + 1)]
    prof = resolve_profile(uap_rivals.PROFILES, "black-box-quick",
                           {"black_box": {**quick.black_box, "weighting": weights}})
    assert learned_config(prof, sel).weighting == weights
    with pytest.raises(ValueError, match="black_box weighting: the weighting lists 2 step"):
        resolve_profile(uap_rivals.PROFILES, "black-box-quick",
                        {"black_box": {**quick.black_box, "weighting": [1.0, 1.0]}})
