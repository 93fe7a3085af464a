"""(f) Zeroth-order oracles: one ZO-LFT meta-iteration per oracle, each against the Gaussian one.

``python benchmarks/zo_oracles.py [--quick] [--device auto|cpu|cuda]``. Every oracle spends 21
loss evaluations per step (20 directions plus the base point, forward differences), on the
sine MLP (1 761 weights): ``MetaTrainer.iteration`` of ZO-LFT (LSTM rule, horizon 20,
meta-batch 4) with plain Gaussian directions (the baseline), orthogonal directions, the
history least-squares estimate (m = 3), Guided ES, the learned sampling distribution and a
fitted subspace (a random orthonormal basis stands in for a fitted one: the cost is the same).
Times are medians of alternating runs; the ratios are each oracle's time over the Gaussian
one's, measured in the same run.
"""

from __future__ import annotations

import sys

import torch
from common import OnDevice, alternate, ms, script_main

from lft import MetaTrainer, Method, SineFamily, TrainConfig, preset

ORACLES = {
    "gaussian": {"type": "zo", "q": 20, "mu": 0.005, "directions": "gaussian",
                 "scheme": "forward", "differentiable": False},
    "orthogonal": {"type": "zo", "q": 20, "mu": 0.005, "directions": "orthogonal",
                   "scheme": "forward", "differentiable": False},
    "history": {"type": "history", "q": 20, "m": 3, "mu": 0.005, "scheme": "forward"},
    "guided": {"type": "guided", "q": 20, "mu": 0.005, "scheme": "forward"},
    "learned": {"type": "learned", "q": 20, "mu": 0.005, "scheme": "forward"},
    "subspace": {"type": "subspace", "q": 20, "dim": SineFamily().model.dim, "mu": 0.005,
                 "scheme": "forward"},
}


def trainer_for(oracle: dict, family, device: torch.device) -> MetaTrainer:
    """A ZO-LFT meta-trainer on ``oracle`` (a fitted subspace gets a random basis)."""
    method = Method(preset("lft", zo=True, oracle=dict(oracle)), family).to(device)
    if oracle["type"] == "subspace":
        g = torch.Generator().manual_seed(0)
        method.oracle.set_basis(torch.randn(oracle["q"], oracle["dim"], generator=g))
    return MetaTrainer(method, family, TrainConfig(iterations=10**9, meta_batch=4,
                                                   meta_lr=3e-3))


def run(quick: bool, device: torch.device) -> dict:
    family = OnDevice(SineFamily(), device)
    reps = 3 if quick else 10
    trainers = {name: trainer_for(o, family, device) for name, o in ORACLES.items()}
    counters = {name: [0] for name in ORACLES}

    def step(name):
        counters[name][0] += 1
        trainers[name].iteration(counters[name][0])

    times = alternate({name: (lambda n=name: step(n)) for name in ORACLES}, device, reps,
                      warmup=1)
    print(f"ZO-LFT meta-iteration, sine, horizon 20, meta-batch 4, 21 loss evaluations per "
          f"step ({reps} alternating runs, medians):", flush=True)
    out = {}
    for name, t in times.items():
        out[f"zo_meta_iter_ms_{name}"] = t * 1e3
        out[f"zo_meta_iter_{name}_over_gaussian"] = t / times["gaussian"]
        print(f"  {name:10s} {ms(t)}  ({t / times['gaussian']:.2f}x Gaussian)", flush=True)
    return out


def main(argv=None) -> int:
    return script_main(__doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
