"""``lft reproduce ARTEFACT --resume`` after ``kill -9``: the jobs the killed run finished are read
back, not run again, and the rows equal those of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lft.experiments.jobstore import JobStore

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TINY = {
    "figure4": {"iterations": {"lft": 3, "l2o": 3, "lft+init": 3, "maml": 6}, "test_tasks": 12,
                "tune_tasks": 6, "steps": 5, "zo_variants": {},
                "zo_rivals": {"oracles": [{"type": "history", "q": 4}], "budgets": [1, 5],
                              "rules": ["signsgd"]}},
    "table2": {},
    "table1": {},
}
RUN = """
import sys, torch
torch.set_num_threads(1)
from lft.experiments import {module}
{module}.reproduce("quick", sys.argv[1], workers=1, progress=False,
                   profile_overrides={overrides}{data})
"""


def _kwargs(artefact: str) -> dict:
    return {} if artefact == "figure4" else {"data_dir": str(SHARED)}


def _rows(out: Path) -> list[dict]:
    return json.loads((out / "results.json").read_text())["rows"]


@pytest.mark.parametrize("artefact", ["figure4", "table2", "table1"])
def test_resume_after_kill_finishes_with_the_rows_of_an_uninterrupted_run(artefact, tmp_path):
    import importlib

    if artefact != "figure4" and not SHARED.is_dir():
        pytest.skip("needs ../shared/data")
    module = importlib.import_module(f"lft.experiments.{artefact}")
    torch.set_num_threads(1)
    whole = tmp_path / "whole"
    module.reproduce("quick", whole, workers=1, progress=False,
                     profile_overrides=TINY[artefact], **_kwargs(artefact))

    killed = tmp_path / "killed"
    data = f", data_dir={str(SHARED)!r}" if artefact != "figure4" else ""
    code = RUN.format(module=artefact, overrides=repr(TINY[artefact]), data=data)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-c", code, str(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if len(list((killed / "jobs").glob("*.json"))) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in (killed / "jobs").glob("*.json")}
    assert len(finished) >= 2 and not (killed / "results.json").exists()

    module.reproduce("quick", killed, workers=1, progress=False,
                     profile_overrides=TINY[artefact], resume=True, **_kwargs(artefact))
    assert _rows(killed) == _rows(whole)
    for name, mtime in finished.items():  # read back, not run again
        assert (killed / "jobs" / name).stat().st_mtime_ns == mtime


def test_a_stored_record_is_read_back_exactly(tmp_path):
    job = {"label": "A b+c", "seed": 3, "nested": {"x": [1, 2.5]}}
    record = {"curves": {"mse": [[0.1, 1 / 3]]}, "t": torch.randn(3, 2, dtype=torch.float64),
              "by_step": {5: 0.25, 10: torch.tensor([1, 2])}, "none": None}
    JobStore(tmp_path).save(job, record)
    assert JobStore(tmp_path).done(job) is None  # without resume nothing is reused
    back = JobStore(tmp_path, resume=True).done(job)
    assert back["curves"] == record["curves"] and back["none"] is None
    assert torch.equal(back["t"], record["t"]) and back["t"].dtype == torch.float64
    assert back["by_step"][5] == 0.25 and torch.equal(back["by_step"][10], torch.tensor([1, 2]))
    assert JobStore(tmp_path, resume=True).done({**job, "seed": 4}) is None  # another job
