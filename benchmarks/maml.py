"""(a) Second-order MAML meta-iteration on sine, meta-batch 25: lft against other libraries.

``python benchmarks/maml.py [--quick] [--device auto|cpu|cuda]`` times one meta-iteration of
``lft`` (``MetaTrainer.iteration`` of ``preset("maml")``, tasks batched) and of the same
computation written with ``higher``, torchopt's ``MetaSGD`` module API, torchopt's functional
API under ``vmap`` and a plain per-task loop (see ``maml_baselines.py``), at 1 and 5 inner
steps. Before timing, every baseline's meta-gradient on one shared task batch is checked
against lft's. A library that cannot be imported or run is reported, not fatal.
"""

from __future__ import annotations

import sys

import torch
from common import OnDevice, alternate, batch_to, ms, script_main
from maml_baselines import BASELINES

from lft import MetaTrainer, Method, SineFamily, TrainConfig, preset
from lft.tasks.base import TaskFamily

META_BATCH = 25


class _Fixed(TaskFamily):
    """A family that always returns the same batch (for the agreement check)."""

    def __init__(self, tasks):
        self.tasks, self.model, self.name = tasks, tasks.model, "fixed"

    def sample(self, n, generator=None):
        return self.tasks


def lft_trainer(family: TaskFamily, steps: int, device: torch.device) -> MetaTrainer:
    """lft's MAML meta-trainer: ``steps`` second-order SGD steps, meta-batch 25."""
    method = Method(preset("maml", horizon=steps), family).to(device)
    return MetaTrainer(method, family, TrainConfig(iterations=10**9, meta_batch=META_BATCH,
                                                   meta_lr=1e-3))


def agreement(baseline, steps: int, family: SineFamily, device: torch.device) -> float:
    """Largest relative difference between the baseline's meta-gradient and lft's."""
    tasks = batch_to(family.sample(META_BATCH, torch.Generator().manual_seed(123)), device)
    trainer = lft_trainer(_Fixed(tasks), steps, device)
    trainer.iteration(0)
    ours = trainer.method.init.theta0.grad.reshape(-1)
    baseline.iteration(tasks)
    theirs = baseline.meta_gradient()
    return float((ours - theirs).abs().max() / ours.abs().max())


def run(quick: bool, device: torch.device) -> dict:
    """Time every contender at 1 and 5 inner steps; returns flat results."""
    family = SineFamily()
    fam = OnDevice(family, device)
    reps = 15 if quick else 60
    out: dict = {}
    for steps in (1, 5):
        trainer = lft_trainer(fam, steps, device)
        init = family.model.unflatten(trainer.method.init.theta0.detach())
        contenders, it = {}, [0]

        def lft_iteration(trainer=trainer, it=it):
            it[0] += 1
            trainer.iteration(it[0])

        contenders["lft"] = lft_iteration
        for name, cls in BASELINES.items():
            key = f"{name}_{steps}step"
            try:
                base = cls(family.model.module, init, steps, device)
                out[f"maml_agreement_{key}"] = agreement(
                    cls(family.model.module, init, steps, device), steps, family, device)
            except Exception as e:  # noqa: BLE001 - report any library failure, keep going
                out[f"maml_{key}_error"] = f"{type(e).__name__}: {e}".splitlines()[0][:300]
                print(f"  {name}: unavailable ({out[f'maml_{key}_error']})", flush=True)
                continue
            gen = torch.Generator().manual_seed(7)

            def base_iteration(base=base, gen=gen):
                base.iteration(batch_to(family.sample(META_BATCH, gen), device))

            contenders[name] = base_iteration
        times = alternate(contenders, device, reps)
        out[f"maml_lft_ms_{steps}step"] = times["lft"] * 1e3
        print(f"MAML, sine, meta-batch {META_BATCH}, {steps} inner step(s), second order "
              f"({reps} alternating runs, medians):", flush=True)
        print(f"  lft: {ms(times['lft'])}")
        for name in BASELINES:
            if name not in times:
                continue
            speedup = times[name] / times["lft"]
            out[f"maml_{name}_ms_{steps}step"] = times[name] * 1e3
            out[f"maml_speedup_vs_{name}_{steps}step"] = speedup
            agree = out.get(f"maml_agreement_{name}_{steps}step", float("nan"))
            print(f"  {name}: {ms(times[name])}  -> lft is {speedup:.2f}x faster "
                  f"(meta-gradient rel. diff {agree:.1e})", flush=True)
    return out


def main(argv=None) -> int:
    return script_main(__doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
