"""Resumable, crash-safe runs and safe loading.

``kill -9`` or Ctrl-C of a real ``python -m lft train`` followed by ``--resume`` reaches the
same weights, bit for bit, as a run that was never interrupted; pickles, foreign and truncated
files are refused with a clear error and never executed; a resume with another configuration
is refused, naming the fields that differ.
"""

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors import safe_open

from lft import checkpoint
from lft import resume as runs
from lft.cli import main
from lft.meta import MetaTrainer, Method, TrainConfig, preset
from lft.tasks import SineFamily

ITERATIONS = 200
ARGS = ["train", "--task", "sine", "--method", "lft", "--iterations", str(ITERATIONS),
        "--meta-batch", "2", "--horizon", "3", "--seed", "7", "--checkpoint-every", "4",
        "--quiet"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def lft(out, *extra) -> subprocess.Popen:
    """``python -m lft train`` (the tiny sine setting) as a real process."""
    return subprocess.Popen([sys.executable, "-m", "lft", *ARGS, "--out", str(out), *extra],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=120) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def tensors(path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def assert_identical(a, b):
    ta, tb = tensors(a), tensors(b)
    assert sorted(ta) == sorted(tb)
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k


def wait_for_checkpoint(proc, path, timeout=60):
    t0 = time.monotonic()
    while not path.is_file():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() - t0 < timeout, "no periodic checkpoint appeared"
        time.sleep(0.02)


def saved_iteration(path) -> int:
    return checkpoint.read_training_state(path)[1]["iteration"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The final checkpoint of an uninterrupted run."""
    out = tmp_path_factory.mktemp("uninterrupted")
    code, err = finish(lft(out))
    assert code == 0, err
    return out / "checkpoint.safetensors"


def test_kill_9_then_resume_is_bit_identical(tmp_path, reference):
    out, ckpt = tmp_path / "run", tmp_path / "run" / "checkpoint.safetensors"
    proc = lft(out)
    wait_for_checkpoint(proc, ckpt)
    time.sleep(random.uniform(0.0, 0.3))  # a random point after the first periodic checkpoint
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    killed_at = saved_iteration(ckpt)
    assert 0 < killed_at < ITERATIONS
    code, err = finish(lft(out, "--resume"))
    assert code == 0, err
    assert_identical(ckpt, reference)
    logged = [json.loads(line)["iteration"] for line in
              (out / "metrics.jsonl").read_text().splitlines()]
    assert logged == sorted(set(logged))  # records after the last checkpoint were not doubled


def test_ctrl_c_saves_then_resume_is_bit_identical(tmp_path, reference):
    out, ckpt = tmp_path / "run", tmp_path / "run" / "checkpoint.safetensors"
    proc = lft(out)
    wait_for_checkpoint(proc, ckpt)
    proc.send_signal(signal.SIGINT)
    code, err = finish(proc)
    assert code == 130, err
    assert "--resume" in err and "Traceback" not in err
    assert 0 < saved_iteration(ckpt) < ITERATIONS
    code, err = finish(lft(out, "--resume"))
    assert code == 0, err
    assert_identical(ckpt, reference)
    method, _, extra = checkpoint.load(ckpt)  # the final file is an ordinary checkpoint
    assert extra["complete"] and method.config.horizon == 3


def tiny_trainer(seed=3, streams=1, iterations=9):
    family = SineFamily(hidden=(8,))
    method = Method(preset("lft", horizon=4, truncation=3, rule={"hidden": 4}), family, seed=seed)
    return MetaTrainer(method, family, TrainConfig(iterations=iterations, meta_batch=4, seed=seed,
                                                   lr_decay=0.1, task_streams=streams))


@pytest.mark.parametrize("streams", [1, 2])
def test_stop_save_resume_in_process_is_bit_identical(tmp_path, streams):
    whole = tiny_trainer(streams=streams)
    whole.train(progress=False)
    first = tiny_trainer(streams=streams)
    config = runs.run_config(first)
    path = tmp_path / "c.safetensors"
    first.train(progress=False, save=lambda: runs.save(path, first, config),
                stop=lambda: first.stats.iterations == 4)
    assert first.stopped and saved_iteration(path) == 4
    second = tiny_trainer(streams=streams)
    assert runs.resume(path, second, runs.run_config(second)) == 4
    second.train(progress=False)
    for k, v in whole.method.state_dict().items():
        assert torch.equal(v, second.method.state_dict()[k]), k
    for a, b in zip(whole.optimizer.state.values(), second.optimizer.state.values()):
        assert all(torch.equal(a[k], b[k]) for k in a)


def small_run(out, *extra):
    return main(["train", "--iterations", "3", "--meta-batch", "2", "--horizon", "2",
                 "--checkpoint-every", "2", "--out", str(out), "--quiet", *extra])


def test_resume_with_another_configuration_is_refused(tmp_path, capsys):
    assert small_run(tmp_path) == 0
    capsys.readouterr()
    assert small_run(tmp_path, "--resume", "--meta-lr", "0.01", "--seed", "1") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "train.meta_lr (checkpoint 0.003, now 0.01)" in err and "train.seed" in err
    assert "method." not in err and "train.iterations" not in err


def test_resume_without_a_checkpoint_and_of_a_finished_run(tmp_path, capsys):
    assert small_run(tmp_path / "none", "--resume") == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert small_run(tmp_path / "done") == 0
    before = (tmp_path / "done" / "checkpoint.safetensors").read_bytes()
    assert small_run(tmp_path / "done", "--resume") == 0
    assert (tmp_path / "done" / "checkpoint.safetensors").read_bytes() == before


class MakesMarker:
    """Unpickling this would create ``marker``: the test that nothing is unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def bad_files(tmp_path):
    marker = tmp_path / "EXECUTED"
    pkl = tmp_path / "evil.safetensors"
    pkl.write_bytes(pickle.dumps(MakesMarker(marker)))
    pt = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "x": MakesMarker(marker)}, pt)
    text = tmp_path / "config.json"
    text.write_text('{"not": "a checkpoint"}')
    return marker, {"pickle": pkl, "torch.save": pt, "json": text}


@pytest.mark.parametrize("kind", ["pickle", "torch.save", "json"])
def test_pickles_and_wrong_files_are_refused_not_executed(tmp_path, capsys, kind):
    marker, files = bad_files(tmp_path)
    bad = files[kind]
    with pytest.raises(checkpoint.CheckpointError, match="not a safetensors checkpoint"):
        checkpoint.load(bad)
    assert main(["evaluate", str(bad), "--tasks", "2", "--steps", "1", "--quiet"]) == 2
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.safetensors").write_bytes(bad.read_bytes())
    assert small_run(run, "--resume") == 2
    err = capsys.readouterr().err
    assert err.count("lft: error:") == 2 and "never unpickles" in err and "Traceback" not in err
    assert not marker.exists()


def test_truncated_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert small_run(tmp_path) == 0
    path = tmp_path / "checkpoint.safetensors"
    data = path.read_bytes()
    for cut in (len(data) // 2, 6):
        path.write_bytes(data[:cut])
        with pytest.raises(checkpoint.CheckpointError, match="damaged"):
            checkpoint.load(path)
        capsys.readouterr()
        assert small_run(tmp_path, "--resume") == 2
        err = capsys.readouterr().err
        assert "damaged" in err and "Traceback" not in err
