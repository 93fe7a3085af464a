"""The probes behind the README's claims stay runnable: each parses its options and says how to
run it; the CIFAR-10 plateau probe runs end to end on two tasks."""

from functools import partial

import pytest
import torch
from conftest import load_script

torch.set_num_threads(1)
load = partial(load_script, "probes")


@pytest.mark.parametrize("name", ["uap_meta_lambda", "cifar_plateau", "uap_kappa", "zo_subspace",
                                  "zo_subspace_residual", "budgets_weighting",
                                  "uap_weighting"])
def test_probe_parses_its_options_and_documents_its_command(name, capsys):
    probe = load(name)
    assert f"python probes/{name}.py" in probe.__doc__
    with pytest.raises(SystemExit) as exit_:
        probe.main(["--help"])
    assert exit_.value.code == 0 and "--data-dir" in capsys.readouterr().out


def test_cifar_plateau_probe_runs_and_plain_schedule_is_adam(data_dir):
    curves = load("cifar_plateau").main(["--tasks", "2", "--data-dir", str(data_dir)])
    assert len(curves) == 7 and all(len(c) == 7 for c in curves.values())
    # the per-role loop with every multiplier 1 is lft's Adam on the same tasks and starts
    assert curves["Adam, all layers, lr 0.001 (= plain Adam)"] == pytest.approx(
        curves["Adam, lr 0.001"], abs=1e-6)
