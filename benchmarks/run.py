"""Run every benchmark and write one flat JSON object.

``python benchmarks/run.py [--quick] [--device auto|cpu|cuda] [--only a,b,...] --json FILE``

Parts: ``maml`` (a: second-order MAML against higher/torchopt/loop), ``batch`` (b: LFT batched
against a per-task loop), ``step`` (c: one LSTM-rule step against one Adam step), ``memory``
(d: peak memory against horizon and inner steps, growth over 2 000 meta-iterations), ``eval``
(e: evaluating ``images-fo-lft`` against Adam on 100 MNIST tasks x 20 steps), ``oracles``
(f: a ZO-LFT meta-iteration per zeroth-order oracle, over the Gaussian one's). Speed-ups
are baseline time / lft time; every other ratio is lft / baseline. ``--quick`` takes about two
minutes on 2 CPU cores. See ``benchmarks/README.md`` for the latest figures.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import eval_step
import lft_batch
import lstm_step
import maml
import memory
import torch
import zo_oracles
from common import clock_for, machine, pick_device, setup

PARTS = {"maml": maml.run, "batch": lft_batch.run, "step": lstm_step.run, "memory": memory.run,
         "eval": eval_step.run, "oracles": zo_oracles.run}
REQUIRED = (
    "maml_speedup_vs_higher_1step", "maml_speedup_vs_higher_5step",
    "maml_speedup_vs_torchopt_module_1step", "maml_speedup_vs_torchopt_module_5step",
    "maml_speedup_vs_torchopt_vmap_1step", "maml_speedup_vs_torchopt_vmap_5step",
    "lft_batched_speedup_b16", "lstm_step_over_adam_mnist_mlp",
    "lstm_step_over_adam_cifar_conv4", "lstm_step_fraction_of_matmul_peak",
    "peak_mem_ratio_h200_over_h20", "mem_growth_over_2000_iters", "eval_lft_over_adam_mnist",
    "machine",
)


def write(path: str, results: dict, t0: float) -> list[str]:
    """Write ``results`` (with the elapsed time and any missing keys); returns the missing."""
    results["total_seconds"] = time.perf_counter() - t0
    missing = [k for k in REQUIRED if k not in results]
    results["missing_keys"] = missing
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    return missing


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (~2 minutes)")
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    ap.add_argument("--threads", type=int, default=1, help="CPU intra-op threads (default 1)")
    ap.add_argument("--only", default=",".join(PARTS), help=f"comma-separated of {list(PARTS)}")
    ap.add_argument("--data-dir", default=lstm_step.DATA_DIR, help="MNIST/CIFAR-10 folder")
    ap.add_argument("--json", required=True, help="where to write the results")
    args = ap.parse_args(argv)
    device = pick_device(args.device)
    setup(device, args.threads)
    results: dict = {"machine": machine(device), "device": str(device),
                     "clock": clock_for(device)[1], "quick": args.quick,
                     "command": "python benchmarks/run.py " + " ".join(sys.argv[1:]),
                     "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    print(results["machine"], flush=True)
    t0 = time.perf_counter()
    parts = dict(PARTS, step=functools.partial(lstm_step.run, data_dir=args.data_dir),
                 eval=functools.partial(eval_step.run, data_dir=args.data_dir))
    for name in args.only.split(","):
        if name not in parts:
            ap.error(f"unknown part {name!r}; choose from {list(PARTS)}")
        try:
            results.update(parts[name](args.quick, device))
        except Exception as e:  # noqa: BLE001 - one failing part must not lose the others
            results[f"{name}_error"] = f"{type(e).__name__}: {e}"[:500]
            print(f"{name}: FAILED ({results[f'{name}_error']})", flush=True)
        write(args.json, results, t0)  # after every part: a run cut short keeps what it did
    missing = write(args.json, results, t0)
    print(f"wrote {args.json} ({results['total_seconds']:.0f} s)"
          + (f"; missing: {missing}" if missing else ""), flush=True)
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main())
