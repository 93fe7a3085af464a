"""The worked examples in examples/ run (with tiny settings) and produce what they promise."""

from functools import partial

import pytest
import torch
from conftest import load_script

torch.set_num_threads(1)
load = partial(load_script, "examples")


def test_fine_tune_your_model(capsys):
    results = load("fine_tune_your_model").main(["--steps", "2"])
    assert {"sine-fo-lft", "sine-zo-lft"} <= set(results)
    for r in results.values():
        assert r["train"] < r["start"]  # every optimiser lowered the training loss
    assert "sine-fo-lft" in capsys.readouterr().out


def test_meta_train_your_task_family(tmp_path, capsys):
    curves = load("meta_train_your_task_family").main(
        ["--iterations", "2", "--steps", "3", "--tasks", "4", "--out", str(tmp_path)])
    assert set(curves) >= {"FO-LFT"} and all(len(c) == 4 for c in curves.values())
    assert (tmp_path / "quadratic-fo-lft.safetensors").is_file()
    assert "LearnedOptimizer" in capsys.readouterr().out


def test_attack_your_classifier(capsys):
    asr = load("attack_your_classifier").main(["--steps", "2", "--q", "2"])
    assert set(asr) == {"white box", "black box", "white box, uap-fo-lft"}
    assert all(0.0 <= v <= 1.0 for v in asr.values())
    assert "images sent to the classifier" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["fine_tune_your_model", "meta_train_your_task_family",
                                  "attack_your_classifier"])
def test_example_documents_how_to_run_it(name):
    doc = load(name).__doc__
    assert f"python examples/{name}.py" in doc and "tests/test_examples.py" in doc
