"""``lft analyze gradient-gap``: Theorem 1's LFT/L2O meta-gradient gap shrinks with shots."""

import json

import pytest
import torch

from lft.analysis.gradient_gap import GapSettings, task_meta_gradients, trainable
from lft.cli import main
from lft.finetuner import FineTuner
from lft.oracles import FirstOrder
from lft.tasks import SineFamily


def test_gap_is_smaller_with_many_shots_than_with_one(tmp_path, capsys):
    out = tmp_path / "gap"
    assert main(["analyze", "gradient-gap", "--shots", "100,1", "--tasks", "16", "--seeds", "1",
                 "--horizon", "5", "--out", str(out), "--quiet"]) == 0
    assert "Largest gap at 1 shot" in capsys.readouterr().out
    doc = json.loads((out / "gradient_gap.json").read_text())
    one, many = doc["config"]["records"]
    assert (one["shots"], many["shots"]) == (1, 100) and one["n"] == 16
    assert many["rel_median"] < 0.5 * one["rel_median"]
    assert many["pooled_rel"] < one["pooled_rel"]
    assert many["cos"] > one["cos"] + 0.3
    assert {r["shots"] for r in doc["rows"]} == {1, 100}
    assert (out / "gradient_gap.png").stat().st_size > 0
    assert "| 100 |" in (out / "gradient_gap.md").read_text()


def test_identical_splits_give_identical_meta_gradients():
    """With D_val = D_tr the two meta-losses coincide, so the gap is exactly zero."""
    family = SineFamily(shots=5, val_points=5)
    tasks = family.sample(1, torch.Generator().manual_seed(0))
    tasks.data["val"] = tasks.data["train"]
    rule = trainable(FineTuner.load("sine-fo-lft").rule)
    theta0 = family.model.init(1, torch.Generator().manual_seed(1))
    g_lft, g_l2o = task_meta_gradients(rule, FirstOrder(), tasks, theta0,
                                       GapSettings(horizon=3))
    assert g_lft.norm() > 0 and torch.equal(g_lft, g_l2o)


@pytest.mark.parametrize("argv,needle", [
    (["--rule", "sine-typo"], "sine-fo-lft"),
    (["--shots", "0,5"], "positive"),
])
def test_bad_input_is_one_line_exit_2(argv, needle, capsys, tmp_path):
    try:
        code = main(["analyze", "gradient-gap", *argv, "--out", str(tmp_path), "--quiet"])
    except SystemExit as e:  # argparse rejects bad option values itself
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err
