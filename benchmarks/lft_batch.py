"""(b) LFT meta-iteration on sine: tasks batched against a per-task loop, meta-batch 1, 4, 16.

``python benchmarks/lft_batch.py [--quick] [--device auto|cpu|cuda]``. The batched contender
is ``MetaTrainer.iteration`` of ``preset("lft")`` (first-order LSTM rule, horizon 20, meta-loss
on the validation split, normalised per task), all tasks of the meta-batch in one computation.
The loop does the same meta-iteration one task at a time with the same engine pieces
(``Method.start``, ``trajectory``): each task's weighted meta-loss, divided by the meta-batch
size, is back-propagated in turn, then one clipped Adam step. The two meta-gradients are
checked equal on a shared batch before timing.
"""

from __future__ import annotations

import sys

import torch
from common import OnDevice, alternate, batch_to, ms, script_main

from lft import MetaTrainer, Method, SineFamily, TrainConfig, preset
from lft.meta.objective import step_weights
from lft.meta.unroll import trajectory
from lft.tasks.base import TaskBatch

SIZES = (1, 4, 16)


def task(tasks: TaskBatch, i: int) -> TaskBatch:
    """Task ``i`` of a batch as a batch of one."""
    data = {k: (x[i:i + 1], y[i:i + 1]) for k, (x, y) in tasks.data.items()}
    return TaskBatch(tasks.model, data, tasks.loss_fn, tasks.metric_fns, tasks.primary_metric)


class PerTaskLoop:
    """The LFT meta-iteration, one task at a time (same engine, no batching)."""

    def __init__(self, method: Method, meta_batch: int, device: torch.device, seed: int = 1):
        self.method, self.b, self.device = method, meta_batch, device
        self.optimizer = torch.optim.Adam(method.meta_parameters(), lr=3e-3)
        self.task_gen = torch.Generator().manual_seed(seed)
        self.init_gen = torch.Generator().manual_seed(seed + 1)

    def meta_backward(self, tasks: TaskBatch, theta0: torch.Tensor) -> None:
        """Accumulate the meta-gradient of ``tasks`` started at ``theta0``, task by task."""
        m, cfg = self.method, self.method.config
        weights = step_weights(cfg.weighting, cfg.horizon)
        for i in range(tasks.size):
            one = task(tasks, i)
            theta = theta0[i:i + 1]
            state = m.rule.init(theta, one.roles)
            with torch.no_grad():
                scale = one.loss(theta, cfg.meta_split).clamp_min(1e-8)
            loss = theta.new_zeros(())
            for k, (theta, state) in enumerate(trajectory(m.rule, m.oracle, one, theta, state,
                                                          cfg.horizon)):
                loss = loss + weights[k] * (one.loss(theta, cfg.meta_split) / scale).mean()
            (loss / tasks.size).backward()

    def iteration(self, family) -> None:
        tasks = batch_to(family.sample(self.b, self.task_gen), self.device)
        theta0 = tasks.init(self.init_gen)
        self.optimizer.zero_grad(set_to_none=True)
        self.meta_backward(tasks, theta0)
        torch.nn.utils.clip_grad_norm_(self.method.meta_parameters(), 1.0)
        self.optimizer.step()


def agreement(device: torch.device) -> float:
    """Relative difference of the batched and looped meta-gradients on one batch of 4."""
    family = SineFamily()
    tasks = batch_to(family.sample(4, torch.Generator().manual_seed(5)), device)
    theta0 = tasks.init(torch.Generator().manual_seed(6))
    method = Method(preset("lft"), family).to(device)
    loop = PerTaskLoop(method, 4, device)
    loop.meta_backward(tasks, theta0)
    looped = torch.cat([p.grad.reshape(-1) for p in method.meta_parameters()])
    method.zero_grad(set_to_none=True)
    m, cfg = method, method.config
    state = m.rule.init(theta0, tasks.roles)
    with torch.no_grad():
        scale = tasks.loss(theta0, "val").clamp_min(1e-8)
    weights, loss, theta = step_weights(cfg.weighting, cfg.horizon), 0.0, theta0
    for k, (theta, state) in enumerate(trajectory(m.rule, m.oracle, tasks, theta, state,
                                                  cfg.horizon)):
        loss = loss + weights[k] * (tasks.loss(theta, "val") / scale).mean()
    loss.backward()
    batched = torch.cat([p.grad.reshape(-1) for p in method.meta_parameters()])
    return float((batched - looped).abs().max() / batched.abs().max())


def run(quick: bool, device: torch.device) -> dict:
    family = OnDevice(SineFamily(), device)
    reps = 5 if quick else 20
    out = {"lft_batch_agreement": agreement(device)}
    print(f"LFT meta-iteration, sine, horizon 20, first order: batched vs per-task loop "
          f"({reps} alternating runs, medians; meta-gradients agree to "
          f"{out['lft_batch_agreement']:.1e}):", flush=True)
    for b in SIZES:
        method = Method(preset("lft"), family).to(device)
        trainer = MetaTrainer(method, family, TrainConfig(iterations=10**9, meta_batch=b,
                                                          meta_lr=3e-3))
        loop = PerTaskLoop(Method(preset("lft"), family).to(device), b, device)
        it = [0]

        def batched(trainer=trainer, it=it):
            it[0] += 1
            trainer.iteration(it[0])

        times = alternate({"batched": batched, "loop": lambda loop=loop: loop.iteration(family)},
                          device, reps, warmup=1)
        speedup = times["loop"] / times["batched"]
        out[f"lft_batched_ms_b{b}"] = times["batched"] * 1e3
        out[f"lft_loop_ms_b{b}"] = times["loop"] * 1e3
        out[f"lft_batched_speedup_b{b}"] = speedup
        print(f"  meta-batch {b:2d}: batched {ms(times['batched'])}, loop {ms(times['loop'])} "
              f"-> {speedup:.2f}x", flush=True)
    return out


def main(argv=None) -> int:
    return script_main(__doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
