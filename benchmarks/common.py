"""Shared helpers of the benchmark scripts: clocks, alternating timing, devices, machine.

Every comparison times its contenders in the same process, round-robin (a, b, c, a, b, c, ...)
after a warm-up, and reports medians, so that a loaded machine slows all of them alike. On a
CPU the clock is the thread's CPU time (``time.thread_time``, one intra-op thread): on a shared
machine wall time mostly measures the other processes' scheduling. On CUDA the clock is wall
time after ``torch.cuda.synchronize()``.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from lft.tasks.base import TaskBatch, TaskFamily


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else the CPU; never requires CUDA."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def setup(device: torch.device, threads: int = 1) -> None:
    """Intra-op threads for CPU runs (1 unless measuring scaling)."""
    torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # the same float32 numbers as the CPU


def clock_for(device: torch.device) -> tuple[Callable[[], float], str]:
    """The clock of a benchmark on ``device`` and its name."""
    if device.type == "cuda":
        def wall() -> float:
            torch.cuda.synchronize(device)
            return time.perf_counter()

        return wall, "wall time (CUDA synchronised)"
    if torch.get_num_threads() == 1:
        return time.thread_time, "thread CPU time (1 thread)"
    return time.perf_counter, "wall time"


def alternate(fns: dict[str, Callable[[], object]], device: torch.device, reps: int,
              warmup: int = 3) -> dict[str, float]:
    """Median seconds of each callable, timed round-robin after ``warmup`` calls each."""
    clock, _ = clock_for(device)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = clock()
            fn()
            times[name].append(clock() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def batch_to(tasks: TaskBatch, device: torch.device) -> TaskBatch:
    """``tasks`` with its data on ``device``; fresh initial optimisees land there too."""
    if device.type == "cpu":
        return tasks
    data = {k: (x.to(device), y.to(device)) for k, (x, y) in tasks.data.items()}
    moved = _DeviceBatch(tasks.model, data, tasks.loss_fn, tasks.metric_fns,
                         tasks.primary_metric, tasks.info)
    moved.device = device
    return moved


class _DeviceBatch(TaskBatch):
    """A task batch on an accelerator: random initialisations are drawn on the CPU (the
    seeded streams) and moved."""

    device = torch.device("cpu")

    def init(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return super().init(generator).to(self.device)


class OnDevice(TaskFamily):
    """Wraps a family so that every sampled batch lives on ``device``."""

    def __init__(self, family: TaskFamily, device: torch.device):
        self.family, self.device = family, device
        self.name, self.congruous = family.name, family.congruous
        if hasattr(family, "model"):
            self.model = family.model

    def sample(self, n: int, generator: torch.Generator | None = None):
        out = self.family.sample(n, generator)
        if isinstance(out, (list, tuple)):
            return [batch_to(b, self.device) for b in out]
        return batch_to(out, self.device)

    def config(self) -> dict:
        return self.family.config()


def machine(device: torch.device) -> str:
    """One line naming the machine the numbers come from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    text = (f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
            f"{torch.get_num_threads()} intra-op thread(s)")
    if device.type == "cuda":
        text += f", GPU {torch.cuda.get_device_name(device)}"
    try:
        load = os.getloadavg()[0]
        text += f", load average {load:.1f} at start"
    except OSError:
        pass
    return text


def ms(seconds: float) -> str:
    """``seconds`` in milliseconds, 3 significant digits."""
    return f"{seconds * 1e3:.3g} ms"


def script_main(doc: str, run: Callable[..., dict], argv=None,
                data_dir: str | None = None) -> int:
    """The command line of a benchmark script: ``[--quick] [--device auto|cpu|cuda]``, and
    ``[--data-dir DIR]`` when ``data_dir`` (its default) is given: then ``run(quick, device,
    data_dir)``, else ``run(quick, device)``."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="auto")
    if data_dir is not None:
        ap.add_argument("--data-dir", default=data_dir)
    args = ap.parse_args(argv)
    device = pick_device(args.device)
    setup(device)
    run(args.quick, device, *([args.data_dir] if data_dir is not None else []))
    return 0
