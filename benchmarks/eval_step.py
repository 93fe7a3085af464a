"""(e) Evaluating a packaged image fine-tuner against Adam on the same MNIST tasks.

``python benchmarks/eval_step.py [--quick] [--device auto|cpu|cuda]``. What ``lft evaluate``
does (``lft.meta.evaluate``: held-out tasks of a ``ClassificationFamily``, ``Method.curve``
per group of tasks), for the packaged ``images-fo-lft`` (the coordinate LSTM, meta-trained on
MNIST and CIFAR-10) and for ``preset("adam")``, on the same 100 MNIST MLP tasks x 20 steps
(same seed: same tasks, same starting weights). ``eval_lft_over_adam_mnist`` is the ratio of
their times, measured round-robin like every other benchmark here.
"""

from __future__ import annotations

import sys

import torch
from common import alternate, script_main
from lstm_step import DATA_DIR

from lft import Method, preset, pretrained
from lft import checkpoint as ckpt
from lft.meta import evaluate
from lft.tasks import ClassificationFamily

N_TASKS, STEPS = 100, 20


def run(quick: bool, device: torch.device, data_dir: str = DATA_DIR) -> dict:
    if device.type != "cpu":  # evaluate draws and fine-tunes its tasks on the CPU
        return {"eval_step_skipped": f"CPU only (device {device})"}
    family = ClassificationFamily("mnist", "mlp", data_dir=data_dir)
    lft_method, _, _ = ckpt.load(pretrained.resolve("images-fo-lft"), data_dir)
    adam = Method(preset("adam"), family)

    def ev(method):
        return lambda: evaluate(method, family, n_tasks=N_TASKS, steps=STEPS, seed=0,
                                progress=False)

    for method in (lft_method, adam):  # warm-up: data, kernels (the fused one built here)
        evaluate(method, family, n_tasks=2, steps=2, seed=1, progress=False)
    reps = 1 if quick else 3
    print(f"Evaluation, {N_TASKS} MNIST MLP tasks x {STEPS} steps ({reps} alternating "
          "runs, medians):", flush=True)
    t = alternate({"lft": ev(lft_method), "adam": ev(adam)}, device, reps, warmup=0)
    ratio = t["lft"] / t["adam"]
    print(f"  images-fo-lft {t['lft']:.2f} s, adam {t['adam']:.2f} s -> {ratio:.2f}x",
          flush=True)
    return {"eval_lft_s_mnist": t["lft"], "eval_adam_s_mnist": t["adam"],
            "eval_lft_over_adam_mnist": ratio, "eval_tasks_steps": [N_TASKS, STEPS]}


def main(argv=None) -> int:
    return script_main(__doc__, run, argv, data_dir=DATA_DIR)


if __name__ == "__main__":
    sys.exit(main())
