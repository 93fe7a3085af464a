"""Data-parallel meta-training: the meta-batch split across processes (ranks).

The trainer talks to its replicas through one small strategy object, so it runs the same code
alone or on ``torch.distributed``:

* :class:`Replicas` is a single process (rank 0 of 1): it runs every task stream itself and
  every collective is the identity. It is the trainer's default and never touches
  ``torch.distributed``.
* :class:`TorchDistributed` is one rank of a process group (gloo on CPU, NCCL for CUDA
  tensors): it runs its own contiguous share of the task streams and averages meta-gradients
  (and the logged losses) over ranks with an all-reduce before clipping.

Why task *streams*: a meta-batch of ``B`` tasks is drawn from ``S`` independent streams of
``B / S`` tasks each, every stream with its own task, initialisation and oracle generators
derived from the seed. Which process runs a stream does not change its numbers, so ``W`` ranks
with ``S = W`` streams compute the same meta-gradient as one process running all ``S`` streams,
up to the order of floating-point sums. A run's numbers depend on ``S`` (part of its
configuration), not on the world size, so a run may be resumed on any world size dividing
``S``.

A rank that dies or stops answering makes the collectives of the others fail within the process
group's timeout; they raise :class:`DistributedError` instead of hanging.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta

import torch


class DistributedError(RuntimeError):
    """A collective failed: another rank died, or did not answer within the timeout."""


class Replicas:
    """A single process: rank 0 of 1, running every task stream (the trainer's default)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes checkpoints and logs (rank 0)."""
        return self.rank == 0

    def shards(self, streams: int) -> range:
        """The task streams this rank runs: a contiguous ``1 / world_size`` share of them."""
        if streams < 1 or streams % self.world_size:
            raise ValueError(f"task_streams ({streams}) must be a positive multiple of the "
                             f"number of ranks ({self.world_size}); set task_streams to "
                             f"{self.world_size} (or a multiple of it)")
        k = streams // self.world_size
        return range(self.rank * k, (self.rank + 1) * k)

    def average_grads(self, params: list[torch.Tensor], loss: torch.Tensor) -> torch.Tensor:
        """Average the ``.grad`` of ``params`` over ranks in place; returns the mean loss."""
        return loss.detach()

    def average(self, values: list[float]) -> list[float]:
        """The mean of each number over ranks."""
        return list(values)

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank."""
        return bool(flag)

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's ``tensor`` concatenated along dim 0, in rank order."""
        return tensor

    def broadcast_(self, tensors: list[torch.Tensor]) -> None:
        """Overwrite ``tensors`` with rank 0's, in place."""

    def close(self) -> None:
        """Leave the process group (nothing to do alone)."""


class TorchDistributed(Replicas):
    """One rank of a ``torch.distributed`` process group initialised from the environment.

    ``torchrun`` (or the caller) sets ``MASTER_ADDR``, ``MASTER_PORT``, ``RANK`` and
    ``WORLD_SIZE``. ``timeout_s`` bounds every collective, so a dead rank ends the job.
    """

    def __init__(self, timeout_s: float = 300.0, backend: str | None = None):
        import torch._dynamo  # noqa: F401  (see below)
        import torch.distributed as dist

        # Imported after the group exists, torch._dynamo (which torch.optim imports) keeps
        # references to it, so destroy_process_group() could not free it and gloo's threads
        # lived on into interpreter shutdown, where they sometimes aborted the process
        # (SIGABRT, "terminate called without an active exception") after a finished run.
        self._dist, self.timeout_s = dist, float(timeout_s)
        if backend is None:
            backend = ("cpu:gloo,cuda:nccl" if torch.cuda.is_available()
                       and dist.is_nccl_available() else "gloo")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if "nccl" in backend and local < torch.cuda.device_count():
            torch.cuda.set_device(local)  # one GPU per local rank where there are enough
        rank, world = os.environ.get("RANK", "?"), os.environ.get("WORLD_SIZE", "?")
        self._call(f"rank {rank} of {world}: joining the process group at "
                   f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}",
                   dist.init_process_group, backend=backend,
                   timeout=timedelta(seconds=self.timeout_s))
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.backend, self._healthy = backend, True

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RuntimeError as e:  # DistBackendError, DistNetworkError, gloo/NCCL errors
            self._healthy = False
            cause = (str(e).strip().splitlines() or [type(e).__name__])[0]
            cause = re.sub(r"^\[[^\]]*\]\s*", "", cause)[:160]  # drop gloo's "[file.cc:N]"
            raise DistributedError(
                f"{what} failed: another rank died or did not answer within "
                f"{self.timeout_s:.0f}s ({cause})") from None

    def _where(self, what: str) -> str:
        return f"rank {self.rank} of {self.world_size}: {what}"

    def average_grads(self, params, loss):
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads]
                         + [loss.detach().reshape(1).to(grads[0].dtype)])
        self._call(self._where("meta-gradient all-reduce"), self._dist.all_reduce, flat)
        flat /= self.world_size
        offset = 0
        for p in params:
            n = p.numel()
            if p.grad is not None:
                p.grad = flat[offset:offset + n].view_as(p)
            offset += n
        return flat[-1]

    def average(self, values):
        t = torch.tensor(values, dtype=torch.float64)
        self._call(self._where("loss all-reduce"), self._dist.all_reduce, t)
        return (t / self.world_size).tolist()

    def any(self, flag):
        t = torch.tensor([1 if flag else 0], dtype=torch.int32)
        self._call(self._where("stop-flag all-reduce"), self._dist.all_reduce, t,
                   op=self._dist.ReduceOp.MAX)
        return bool(t.item())

    def gather(self, tensor):
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        self._call(self._where("all-gather"), self._dist.all_gather, parts,
                   tensor.contiguous())
        return torch.cat(parts)

    def broadcast_(self, tensors):
        with torch.no_grad():
            for t in tensors:
                self._call(self._where("parameter broadcast"), self._dist.broadcast, t.data,
                           src=0)

    def close(self):
        # After a failure the group may be wedged; destroying it could block on dead peers.
        if self._healthy and self._dist.is_initialized():
            self._dist.destroy_process_group()


def from_env(timeout_s: float = 300.0) -> Replicas:
    """:class:`TorchDistributed` when launched with ``WORLD_SIZE > 1`` (torchrun), else alone."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ValueError(f"WORLD_SIZE must be a number, got {os.environ['WORLD_SIZE']!r}"
                         ) from None
    return TorchDistributed(timeout_s) if world > 1 else Replicas()


__all__ = ["DistributedError", "Replicas", "TorchDistributed", "from_env"]
