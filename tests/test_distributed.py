"""Distributed meta-training on ``torch.distributed`` (gloo, 2 CPU processes on loopback).

Two ranks with a meta-batch of ``2B`` (``B`` each, one task stream each) compute the same
meta-gradient, and reach the same weights, as one process running both streams, up to the
order of floating-point sums; a rank killed mid-run makes the other exit with a clear error
within the process group's timeout, and the job resumes from its last checkpoint; a
finished rank leaves no gloo thread behind to abort the process at exit.

Run as a script (``python tests/test_distributed.py OUT``) this file is one rank of the
Python-level check, configured by the usual ``MASTER_ADDR/MASTER_PORT/RANK/WORLD_SIZE``.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lft import checkpoint
from lft.meta import MetaTrainer, Method, TrainConfig, preset
from lft.meta.distributed import Replicas
from lft.tasks import SineFamily

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
if sys.platform.startswith("linux"):  # gloo on loopback even where the host name resolves afar
    ENV.setdefault("GLOO_SOCKET_IFNAME", "lo")
CLI = ["train", "--task", "sine", "--method", "lft", "--meta-batch", "4", "--horizon", "3",
       "--seed", "11", "--quiet", "--dist-timeout", "60"]


def tiny(streams: int, replicas: Replicas | None = None, zo: bool = False) -> MetaTrainer:
    family = SineFamily(hidden=(8,))
    method = Method(preset("lft", zo=zo, horizon=4, rule={"hidden": 4}), family, seed=5)
    return MetaTrainer(method, family, TrainConfig(iterations=4, meta_batch=4, seed=5, clip=1e9,
                                                   task_streams=streams), replicas=replicas)


def gradient_then_weights(trainer: MetaTrainer) -> tuple[list, list]:
    """The meta-gradient of iteration 0 (one window, unclipped), then weights after 4."""
    trainer.iteration(0)
    grads = [p.grad.clone() for p in trainer.params]
    trainer.train(progress=False)
    return grads, [p.detach().clone() for p in trainer.params]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(argv: list[str], world: int = 2) -> list[subprocess.Popen]:
    """``world`` ranks of ``python ARGV`` with the environment torchrun would give them."""
    port = str(free_port())
    return [subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             env={**ENV, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
                                  "RANK": str(r), "LOCAL_RANK": str(r),
                                  "WORLD_SIZE": str(world)})
            for r in range(world)]


def wait_all(procs, timeout=90) -> list[tuple[int, str]]:
    """Exit status and output (stdout then stderr) of each process."""
    outs = [p.communicate(timeout=timeout) for p in procs]
    return [(p.returncode, o + e) for p, (o, e) in zip(procs, outs)]


class OneRankOfTwo(Replicas):
    """Rank ``rank`` of 2 with the collectives left out: its local share, for comparison."""

    world_size = 2

    def __init__(self, rank):
        self.rank = rank


@pytest.mark.parametrize("zo", [False, True])
def test_task_streams_split_the_meta_batch_exactly(zo):
    """Each rank's share is its own streams: the average of the two shares is the whole."""
    whole = tiny(2, zo=zo)
    whole.iteration(0)
    parts = []
    for rank in (0, 1):
        t = tiny(2, OneRankOfTwo(rank), zo=zo)
        assert t.shards == [rank]
        t.iteration(0)
        parts.append([p.grad for p in t.params])
    for g, a, b in zip((p.grad for p in whole.params), *parts):
        torch.testing.assert_close(g, (a + b) / 2, rtol=1e-5, atol=1e-7)


def test_two_ranks_meta_gradient_and_weights_equal_one_rank(tmp_path):
    results = wait_all(launch([__file__, str(tmp_path)]))
    assert all(code == 0 for code, _ in results), results
    grads, weights = gradient_then_weights(tiny(2))
    ranks = []
    for r in (0, 1):
        with safe_open(str(tmp_path / f"rank{r}.safetensors"), "pt") as f:
            ranks.append({k: f.get_tensor(k) for k in f.keys()})
    for i, (g, w) in enumerate(zip(grads, weights)):
        torch.testing.assert_close(ranks[0][f"grad{i}"], g, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(ranks[0][f"weight{i}"], w, rtol=1e-5, atol=1e-6)
        assert torch.equal(ranks[0][f"weight{i}"], ranks[1][f"weight{i}"])  # replicas agree
    for r in (0, 1):  # close() freed the group: no gloo thread left to abort at exit
        left = (tmp_path / f"threads{r}.txt").read_text().split()
        assert not [t for t in left if "gloo" in t or "tcpstore" in t], left


@pytest.fixture(scope="module")
def one_rank_cli(tmp_path_factory):
    """The CLI on one process with the two task streams of a 2-rank run."""
    from lft.cli import main

    out = tmp_path_factory.mktemp("one-rank")
    assert main([*CLI, "--iterations", "40", "--task-streams", "2", "--out", str(out)]) == 0
    with safe_open(str(out / "checkpoint.safetensors"), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def assert_close_to(path, reference):
    with safe_open(str(path), "pt") as f:
        got = {k: f.get_tensor(k) for k in f.keys()}
    assert sorted(got) == sorted(reference)
    for k, v in reference.items():
        if v.is_floating_point():
            torch.testing.assert_close(got[k], v, rtol=1e-4, atol=1e-6)
        else:  # generator states and step counts: exactly equal
            assert torch.equal(got[k], v), k


def test_killed_rank_ends_the_job_clearly_and_the_job_resumes(tmp_path, one_rank_cli):
    out = tmp_path / "run"
    ckpt = out / "checkpoint.safetensors"
    argv = ["-m", "lft", *CLI, "--iterations", "40", "--checkpoint-every", "2", "--out",
            str(out)]
    procs = launch(argv)
    t0 = time.monotonic()
    while not ckpt.is_file():
        assert all(p.poll() is None for p in procs), wait_all(procs)
        assert time.monotonic() - t0 < 60
        time.sleep(0.02)
    procs[1].kill()  # SIGKILL
    t_kill = time.monotonic()
    err = procs[0].communicate(timeout=90)[1]
    code = procs[0].returncode
    assert time.monotonic() - t_kill < 60  # within --dist-timeout
    assert code == 1, err
    assert "rank 0 of 2" in err and "--resume" in err and "Traceback" not in err
    assert checkpoint.read_training_state(ckpt)[1]["iteration"] < 40
    results = wait_all(launch([*argv, "--resume"]))
    assert all(code == 0 for code, _ in results), results
    assert "resuming FO-LFT at meta-iteration" in results[0][1]
    assert_close_to(ckpt, one_rank_cli)
    logged = [line for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(logged) == len(set(logged))  # rank 0 alone logs


def _rank_main(out: Path) -> None:
    """One rank of :func:`test_two_ranks_meta_gradient_and_weights_equal_one_rank`."""
    from lft.meta.distributed import TorchDistributed

    torch.set_num_threads(1)
    replicas = TorchDistributed(timeout_s=30)
    grads, weights = gradient_then_weights(tiny(2, replicas))
    save_file({**{f"grad{i}": g.contiguous() for i, g in enumerate(grads)},
               **{f"weight{i}": w.contiguous() for i, w in enumerate(weights)}},
              str(out / f"rank{replicas.rank}.safetensors"))
    replicas.close()
    (out / f"threads{replicas.rank}.txt").write_text("\n".join(thread_names()))


def thread_names() -> list[str]:
    """The names of this process's native threads (Linux; empty elsewhere)."""
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        return []
    return [(t / "comm").read_text().strip() for t in tasks.iterdir()]


if __name__ == "__main__":
    _rank_main(Path(sys.argv[1]))
