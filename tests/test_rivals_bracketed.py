"""No committed headline rival is weakened by its grid: in the uap-rivals runs that issue 14's
and 15's claims rest on, every hand-designed rival's tuned step size has a tried rate on each
side of it (tuning widens a grid while its best rate is on an edge,
:func:`lft.meta.evaluate.tune_learning_rate`), and the grids are no coarser than x2."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNS = ("uap-rivals-paper-kappa", "uap-rivals-black-box-subspace", "uap-rivals-paper-kappa-final",
        "uap-rivals-black-box-subspace-budgets")


def tunings(run: str):
    """``(label, chosen rate, {rate: score})`` of every tuned rival of ``run``."""
    cfg = json.loads((ROOT / "results" / run / "results.json").read_text())["config"]
    for source, t in cfg.get("tuning", {}).items():
        for name, rule in t["rules"].items():
            yield f"{source} {name}", rule["lr"], rule["scores"]
    for source, rivals in cfg.get("zo_rivals", {}).items():
        for key, rival in rivals.items():
            for k, lr in rival["best"].items():
                yield f"{source} {key} k={k}", lr, rival["loss_at_k"][str(k)]


def art_tunings(run: str):
    """``(label, best step fraction, step fractions tried alike)`` of every tuned ART attack."""
    cfg = json.loads((ROOT / "results" / run / "results.json").read_text())["config"]
    for source, t in cfg.get("tuning", {}).items():
        for name, art in t["art"].items():
            best = art["best"]["setting"]
            alike = {k: v for k, v in best.items() if k != "step_fraction"}
            steps = [s["setting"]["step_fraction"] for s in art["scores"]
                     if {k: v for k, v in s["setting"].items() if k != "step_fraction"} == alike]
            yield f"{source} {name}", best["step_fraction"], {str(x): 0 for x in steps}


def test_the_helper_sees_an_edge():
    assert not _interior(0.1, {"0.03": 1.0, "0.1": 0.5})
    assert _interior(0.1, {"0.05": 1.0, "0.1": 0.5, "0.2": 0.7})


def _interior(lr, scores) -> bool:
    rates = sorted(float(r) for r in scores)
    return rates[0] < float(lr) < rates[-1]


@pytest.mark.parametrize("run", RUNS)
def test_every_tuned_rival_is_bracketed_on_a_grid_no_coarser_than_x2(run):
    found = list(tunings(run))
    assert found, f"{run}: no tuned rival found"
    edges = [f"{label}: {lr} of {sorted(map(float, s))}" for label, lr, s in found
             if not _interior(lr, s)]
    assert not edges, f"{run}: rivals tuned at the edge of their grid: {edges}"
    for label, _, scores in found:
        rates = sorted(float(r) for r in scores)
        ratios = [b / a for a, b in zip(rates, rates[1:])]
        assert max(ratios) <= 2.0 + 1e-9, f"{run} {label}: grid {rates} is coarser than x2"


def test_every_tuned_art_attack_has_a_smaller_and_a_larger_step_tried():
    found = list(art_tunings(RUNS[0]))
    assert {label.split()[1] for label, _, _ in found} == {"art-pgd", "art-fgsm"}
    edges = [f"{label}: {step} of {sorted(map(float, s))}" for label, step, s in found
             if not _interior(step, s)]
    assert not edges, f"ART attacks tuned at the edge of their steps: {edges}"
