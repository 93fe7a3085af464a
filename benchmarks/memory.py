"""(d) Memory of meta-training: peak RSS against the horizon and inner steps; leaks.

``python benchmarks/memory.py [--quick] [--device auto|cpu|cuda]``. Each setting runs in a
fresh subprocess (``--worker``) so that peaks are separate:

* FO-LFT on sine (meta-batch 16) at horizon 20, 100 and 200, truncated BPTT windows of 20:
  peak RSS must not grow with the horizon (``peak_mem_ratio_h200_over_h20``);
* second-order MAML on sine (meta-batch 25), untruncated, 1 to 20 inner steps: the graph of
  every step is kept, so memory grows with the steps (reported, no target);
* untruncated second-order MAML (meta-batch 25) and untruncated FO-LFT (meta-batch 16) at 5,
  20 and 50 inner steps, plain and with gradient checkpointing (``checkpoint_steps`` about
  the square root of the steps): ``peak_mem_ratio_ckpt_over_plain_{maml,lft}{5,20,50}``;
* 2 000 meta-iterations of a cheap FO-LFT setting (horizon 2, windows of 1, meta-batch 1,
  the rule state carried across windows):
  RSS at the end over RSS after 100 warm-up iterations (``mem_growth_over_2000_iters``).

Peak RSS is the process's high-water mark (``VmHWM``, reset after set-up where the kernel
allows it); ``*_above_start`` figures subtract the RSS just before meta-training. On CUDA the
peaks are ``torch.cuda.max_memory_allocated`` instead (and RSS is still reported).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
from common import OnDevice, pick_device, setup

from lft import MetaTrainer, Method, SineFamily, TrainConfig, preset

MB = 2 ** 20


def _status(field: str) -> float:
    """A ``/proc/self/status`` memory field in bytes (``nan`` where there is none)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024 if (
        field == "VmHWM") else float("nan")


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def worker(spec: dict) -> dict:
    """Run one setting in this (fresh) process; returns its memory figures."""
    device = pick_device(spec["device"])
    setup(device)
    family = OnDevice(SineFamily(), device)
    kind = spec["kind"]
    ckpt = {"checkpoint_steps": spec["checkpoint_steps"]} if spec.get("checkpoint_steps") else {}
    if kind == "lft":
        cfg = preset("lft", horizon=spec["horizon"], truncation=spec["truncation"], **ckpt)
    else:
        cfg = preset("maml", horizon=spec["horizon"], **ckpt)
    method = Method(cfg, family).to(device)
    trainer = MetaTrainer(method, family, TrainConfig(iterations=10**9,
                                                      meta_batch=spec["meta_batch"]))
    start = _status("VmRSS")
    _reset_peak()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_after_warmup, warm = None, spec.get("warmup", 0)
    for it in range(1, spec["iterations"] + 1):
        trainer.iteration(it)
        if it == warm:
            rss_after_warmup = _status("VmRSS")
    out = {"rss_start": start, "peak": _status("VmHWM"), "rss_end": _status("VmRSS"),
           "rss_after_warmup": rss_after_warmup}
    if device.type == "cuda":
        out["cuda_peak"] = float(torch.cuda.max_memory_allocated(device))
    return out


def spawn(spec: dict) -> dict:
    """``worker(spec)`` in a subprocess."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"memory worker {spec} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _peak(r: dict) -> float:
    return r.get("cuda_peak", r["peak"])


def run(quick: bool, device: torch.device) -> dict:
    out: dict = {}
    dev = str(device)
    what = "peak CUDA memory" if device.type == "cuda" else "peak RSS"
    print(f"Memory of meta-training ({what}, one subprocess per setting):", flush=True)
    horizons = {}
    for h in (20, 100, 200):
        r = spawn({"kind": "lft", "horizon": h, "truncation": 20, "meta_batch": 16,
                   "iterations": 1 if quick else 3, "device": dev})
        horizons[h] = r
        out[f"lft_peak_mem_mb_h{h}"] = _peak(r) / MB
        out[f"lft_peak_rss_above_start_mb_h{h}"] = (r["peak"] - r["rss_start"]) / MB
        print(f"  FO-LFT, horizon {h:3d}, windows of 20: {what} {_peak(r) / MB:.0f} MB "
              f"(RSS {r['peak'] / MB:.0f} MB, {(r['peak'] - r['rss_start']) / MB:.0f} MB above "
              "the start)", flush=True)
    out["peak_mem_ratio_h200_over_h20"] = _peak(horizons[200]) / _peak(horizons[20])
    above = [horizons[h]["peak"] - horizons[h]["rss_start"] for h in (20, 200)]
    out["peak_rss_above_start_ratio_h200_over_h20"] = above[1] / max(above[0], 1.0)
    print(f"  -> horizon 200 over 20: {out['peak_mem_ratio_h200_over_h20']:.3f} "
          f"(above the start: {out['peak_rss_above_start_ratio_h200_over_h20']:.3f})")
    for k in ((1, 5, 20) if quick else (1, 2, 5, 10, 20)):
        r = spawn({"kind": "maml", "horizon": k, "meta_batch": 25, "iterations": 3,
                   "device": dev})
        out[f"maml_peak_mem_mb_k{k}"] = _peak(r) / MB
        out[f"maml_peak_rss_above_start_mb_k{k}"] = (r["peak"] - r["rss_start"]) / MB
        print(f"  second-order MAML, {k:2d} inner steps, untruncated: {what} "
              f"{_peak(r) / MB:.0f} MB ({(r['peak'] - r['rss_start']) / MB:.1f} MB above the "
              "start)", flush=True)
    checkpointing(out, quick, dev, what)
    r = spawn({"kind": "lft", "horizon": 2, "truncation": 1, "meta_batch": 1,
               "iterations": 2000, "warmup": 100, "device": dev})
    out["mem_growth_over_2000_iters"] = r["rss_end"] / r["rss_after_warmup"]
    out["rss_mb_after_warmup"] = r["rss_after_warmup"] / MB
    out["rss_mb_after_2000_iters"] = r["rss_end"] / MB
    print(f"  2000 meta-iterations (FO-LFT, horizon 2, windows of 1): RSS "
          f"{r['rss_after_warmup'] / MB:.1f} MB after 100 -> {r['rss_end'] / MB:.1f} MB at the "
          f"end ({out['mem_growth_over_2000_iters']:.3f}x)", flush=True)
    return out


def checkpoint_segment(steps: int) -> int:
    """Segment length for ``steps`` checkpointed inner steps: about ``sqrt(steps)``, which
    balances the kept segment boundaries against one segment's recomputed graph."""
    return max(1, round(steps ** 0.5))


def checkpointing(out: dict, quick: bool, dev: str, what: str) -> None:
    """Untruncated second-order MAML (meta-batch 25) and untruncated FO-LFT (meta-batch 16) at
    5, 20 and 50 inner steps, plain and with gradient checkpointing in segments of
    :func:`checkpoint_segment` steps; ratios checkpointed / plain of the peak and of the peak
    above the pre-training RSS (``peak_mem_ratio_ckpt_over_plain_{maml,lft}{k}``)."""
    for kind, label, batch in (("maml", "second-order MAML", 25), ("lft", "FO-LFT", 16)):
        for k in (5, 20, 50):
            seg = checkpoint_segment(k)
            res = {}
            for mode, c in (("plain", None), ("ckpt", seg)):
                res[mode] = spawn({"kind": kind, "horizon": k, "truncation": None,
                                   "meta_batch": batch, "iterations": 1 if quick else 2,
                                   "checkpoint_steps": c, "device": dev})
                r = res[mode]
                out[f"{kind}_untruncated_{mode}_peak_mem_mb_k{k}"] = _peak(r) / MB
                out[f"{kind}_untruncated_{mode}_peak_rss_above_start_mb_k{k}"] = (
                    r["peak"] - r["rss_start"]) / MB
            above = [res[m]["peak"] - res[m]["rss_start"] for m in ("plain", "ckpt")]
            out[f"peak_mem_ratio_ckpt_over_plain_{kind}{k}"] = (_peak(res["ckpt"])
                                                               / _peak(res["plain"]))
            out[f"peak_rss_above_start_ratio_ckpt_over_plain_{kind}{k}"] = (
                above[1] / max(above[0], 1.0))
            print(f"  {label}, {k:2d} steps, untruncated: {what} plain "
                  f"{_peak(res['plain']) / MB:.0f} MB ({above[0] / MB:.1f} above the start), "
                  f"checkpointed in segments of {seg}: "
                  f"{_peak(res['ckpt']) / MB:.0f} MB ({above[1] / MB:.1f} above the start); "
                  f"ratio {out[f'peak_mem_ratio_ckpt_over_plain_{kind}{k}']:.3f} "
                  f"(above the start "
                  f"{out[f'peak_rss_above_start_ratio_ckpt_over_plain_{kind}{k}']:.3f})",
                  flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    device = pick_device(args.device)
    run(args.quick, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
