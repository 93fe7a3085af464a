"""Process settings of the command line: the intra-op thread count it picks.

Oversubscribed OpenMP threads spin at every barrier, so the default must leave busy cores
alone and keep tiny (sine) jobs on one thread; an explicit request always wins.
"""

import os

import pytest
import torch

from lft import perf
from lft.cli import main


@pytest.fixture
def machine(monkeypatch):
    """A 4-core machine with a settable load average and no OMP_NUM_THREADS."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(perf, "usable_cores", lambda: 4)
    load = {"value": 0.0}
    monkeypatch.setattr(os, "getloadavg", lambda: (load["value"], 0.0, 0.0))
    return load


def test_busy_cores_are_left_alone(machine):
    assert perf.choose_threads() == 4
    machine["value"] = 1.2  # one core busy elsewhere
    assert perf.choose_threads() == 3
    machine["value"] = 9.0  # all busy: still one thread
    assert perf.choose_threads() == 1


def test_small_jobs_get_one_thread_and_requests_win(machine, monkeypatch):
    assert perf.choose_threads(small=True) == 1
    assert perf.choose_threads(3, small=True) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert perf.choose_threads() == 2 and perf.choose_threads(small=True) == 2
    assert perf.choose_threads(1) == 1


def test_bad_thread_settings_get_a_clear_error(machine, monkeypatch, capsys):
    with pytest.raises(ValueError, match="at least 1"):
        perf.choose_threads(0)
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="OMP_NUM_THREADS.*--threads"):
        perf.choose_threads()
    assert main(["train", "--iterations", "1", "--quiet"]) == 2
    assert "OMP_NUM_THREADS must be a whole number" in capsys.readouterr().err


def test_cli_sets_the_threads_it_is_asked_for(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert main(["train", "--iterations", "1", "--quiet", "--threads", "1",
                     "--out", str(tmp_path / "run")]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_evaluating_a_sine_checkpoint_runs_on_one_thread(monkeypatch):
    """Whether the job is small is known once the checkpoint is read (no --task given)."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))  # an idle machine
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert main(["evaluate", "sine-fo-lft", "--tasks", "4", "--steps", "2", "--quiet"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
