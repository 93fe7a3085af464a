"""(c) One fine-tuning step of the default LSTM rule against one Adam step, inference only.

``python benchmarks/lstm_step.py [--quick] [--device auto|cpu|cuda]``. On one task of each model
(sine MLP 1-40-40-1; MNIST MLP 784-128-64-2, 108 866 weights; CIFAR-10 Conv-4) a fine-tuning
step is what ``lft.meta.trajectory`` does under ``torch.no_grad()``: the gradient of the
fine-tuning loss (``FirstOrder`` oracle), the rule's update, ``theta + delta``. The rule is
``preset("lft")``'s (1 layer x 10 units, ``logsign`` + ``adam`` + ``role`` features); Adam is
``lft.rules.Adam``. The update alone (gradient given) is timed as well. The rule's achieved
FLOP rate on the MNIST MLP is reported against a dense float32 matrix product timed in the
same run (``lstm_step_fraction_of_matmul_peak``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from common import alternate, batch_to, ms, script_main

from lft import Method, SineFamily, preset
from lft.oracles import FirstOrder
from lft.rules import build
from lft.rules.features import feature_width
from lft.rules.lstm_fused import compile_info
from lft.tasks import ClassificationFamily

DATA_DIR = str(Path(__file__).resolve().parents[2] / "shared" / "data")


def families(data_dir: str) -> dict:
    """The three models' task families (image ones skipped if their data is missing)."""
    out = {"sine_mlp": lambda: SineFamily()}
    out["mnist_mlp"] = lambda: ClassificationFamily("mnist", "mlp", data_dir=data_dir)
    out["cifar_conv4"] = lambda: ClassificationFamily("cifar10", "conv4", data_dir=data_dir)
    return out


def default_rule():
    """The meta-trained default rule (packaged ``sine-fo-lft``) when this checkout ships it,
    else ``preset("lft")``'s rule at its initialisation (same size, same cost)."""
    try:
        from lft import FineTuner

        rule = FineTuner.load("sine-fo-lft").rule
        if rule.config() == Method(preset("lft"), SineFamily()).rule.config():
            return rule, "pretrained sine-fo-lft (meta-trained, the default configuration)"
    except Exception:  # noqa: BLE001 - an older checkout without packaged rules
        pass
    return Method(preset("lft"), SineFamily()).rule, "preset('lft') rule at initialisation"


def lstm_flops_per_coordinate(rule) -> int:
    """Floating-point operations of one LSTM-rule update per coordinate (counted as issued:
    multiply-adds count 2, every element-wise operation and transcendental counts 1)."""
    h, n_in = rule.hidden, feature_width(rule.features)
    flops = 0
    for layer in range(rule.layers):
        k = (n_in if layer == 0 else h) + h
        flops += 2 * k * 4 * h          # gate matrix product
        flops += 4 * h + 3 * h + 2 * h  # 3 sigmoids + tanh, c = f*c + i*g, h = o*tanh(c)
    flops += 2 * h + 2                  # head, tanh, scale
    flops += 8 + 12                     # logsign and adam features
    return flops


def matmul_rate(device: torch.device, reps: int) -> float:
    """FLOP/s of a dense square float32 matrix product (the practical ceiling): 1024 on a
    CPU, 8192 on a GPU."""
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    t = alternate({"mm": lambda: a @ b}, device, reps)["mm"]
    return 2 * n ** 3 / t


def time_model(name: str, family, device: torch.device, reps: int) -> dict:
    tasks = batch_to(family.sample(1, torch.Generator().manual_seed(0)), device)
    rule, _ = default_rule()
    rule = rule.to(device)
    adam = build({"type": "adam", "lr": 1e-3})
    oracle = FirstOrder()
    theta = tasks.init(torch.Generator().manual_seed(1))
    s_lstm, s_adam = rule.init(theta, tasks.roles), adam.init(theta)

    def loss_fn(th):
        return tasks.loss(th, "train")

    def step(r, state):
        def run():
            with torch.no_grad():
                delta, _ = r.update(oracle(loss_fn, theta), state, theta)
                return theta + delta
        return run

    grad = oracle(loss_fn, theta)

    def update(r, state):
        def run():
            with torch.no_grad():
                return r.update(grad, state, theta)
        return run

    t = alternate({"lstm": step(rule, s_lstm), "adam": step(adam, s_adam),
                   "lstm_update": update(rule, s_lstm), "adam_update": update(adam, s_adam)},
                  device, reps)
    out = {f"lstm_step_ms_{name}": t["lstm"] * 1e3, f"adam_step_ms_{name}": t["adam"] * 1e3,
           f"lstm_step_over_adam_{name}": t["lstm"] / t["adam"],
           f"lstm_update_over_adam_update_{name}": t["lstm_update"] / t["adam_update"],
           f"lstm_update_ms_{name}": t["lstm_update"] * 1e3, f"params_{name}": tasks.dim}
    print(f"  {name} ({tasks.dim} weights): step lstm {ms(t['lstm'])}, adam {ms(t['adam'])} "
          f"-> {t['lstm'] / t['adam']:.2f}x; update only lstm {ms(t['lstm_update'])}, adam "
          f"{ms(t['adam_update'])} -> {t['lstm_update'] / t['adam_update']:.1f}x", flush=True)
    if name == "mnist_mlp":
        flops = lstm_flops_per_coordinate(rule) * tasks.dim
        out["lstm_update_gflops"] = flops / t["lstm_update"] / 1e9
    return out


def run(quick: bool, device: torch.device, data_dir: str = DATA_DIR) -> dict:
    reps = 15 if quick else 50
    out: dict = {"lstm_rule": default_rule()[1]}
    info = compile_info()  # the fused no-grad kernel, built (or loaded) at first use
    out.update(lstm_fused_available=info["available"], lstm_fused_build_s=info["seconds"],
               lstm_fused_cached=info["cached"])
    print(f"Fused LSTM kernel: {'available' if info['available'] else info['error']}, "
          f"{'loaded from the cache' if info['cached'] else 'built'} in "
          f"{info['seconds']:.2f} s", flush=True)
    print(f"One fine-tuning step, one task, no_grad ({reps} alternating runs, medians):",
          flush=True)
    for name, make in families(data_dir).items():
        try:
            family = make()
        except Exception as e:  # noqa: BLE001 - missing data: report and go on
            out[f"lstm_step_{name}_error"] = f"{type(e).__name__}: {e}"[:300]
            print(f"  {name}: skipped ({out[f'lstm_step_{name}_error']})")
            continue
        out.update(time_model(name, family, device, reps))
    if "lstm_update_gflops" in out:
        peak = matmul_rate(device, reps) / 1e9
        out["matmul_gflops"] = peak
        out["lstm_step_fraction_of_matmul_peak"] = out["lstm_update_gflops"] / peak
        print(f"  LSTM update on the MNIST MLP: {out['lstm_update_gflops']:.1f} GFLOP/s, "
              f"dense matmul {peak:.1f} GFLOP/s -> {out['lstm_step_fraction_of_matmul_peak']:.2f}"
              " of the matmul rate", flush=True)
    return out


def main(argv=None) -> int:
    return script_main(__doc__, run, argv, data_dir=DATA_DIR)


if __name__ == "__main__":
    sys.exit(main())
