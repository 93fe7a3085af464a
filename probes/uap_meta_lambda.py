"""Where does FO-LFT land on the ASR-distortion trade-off when meta-trained at another lambda?

Meta-trains the mix-trained (or MNIST-trained) FO-LFT of Table 1 at ``--lam`` with the paper
profile's settings, or reads a finished checkpoint (``--checkpoint``), and compares it with
tuned Adam at the same lambda (its step size from the committed run's tuning phase) on
``--tasks`` tasks per source drawn from **meta-training** images through the ``select`` stream,
which neither meta-training nor testing reads. Prints ASR after 200 steps (± 95% CI),
distortion ``||delta||_2/sqrt(d)`` and the paired differences against Adam.

    python probes/uap_meta_lambda.py --lam 0.0003 --data-dir ../shared/data       # ~20 min
    python probes/uap_meta_lambda.py --lam 0.001 --data-dir ../shared/data \\
        --checkpoint "results/table1/checkpoints/fo-lft-[mnist-plus-cifar10]-lam=0.001.safetensors"
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lft import checkpoint
from lft.experiments import table1
from lft.meta import MetaTrainer, Method, TrainConfig, evaluate
from lft.meta.learners import MethodConfig
from lft.tasks import build_family

ROOT = Path(__file__).resolve().parents[1]


def final(method: Method, family_cfg: dict, tasks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ASR and distortion after the table's 200 steps on ``select`` meta-training tasks."""
    family = build_family({**family_cfg, "part": "meta-train"})
    curves = evaluate(method, family, tasks, 200, seed=0, progress=False, purpose="select",
                      chunk=50, record=[0, 200])
    return curves["asr"].values[:, -1], curves["distortion"].values[:, -1]


def ci(x: torch.Tensor) -> float:
    return float(1.96 * x.std() / len(x) ** 0.5)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Run the probe; per source, the figures it prints."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lam", type=float, required=True)
    p.add_argument("--train", default="mnist+cifar10", choices=table1.TRAIN)
    p.add_argument("--checkpoint", default=None, help="evaluate this FO-LFT instead of training")
    p.add_argument("--save", default=None, help="keep the meta-trained FO-LFT in this file")
    p.add_argument("--tasks", type=int, default=200)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--run", default=str(ROOT / "results" / "table1" / "results.json"),
                   help="the finished Table 1 run whose tuned step sizes Adam uses")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    prof = table1.PROFILES["paper"]
    tuning = json.loads(Path(a.run).read_text())["config"]["tuning"]
    lrs = table1.tuned_lrs(tuning)
    if ("adam", "mnist", table1.lam_key(a.lam)) not in lrs:
        raise SystemExit(f"lambda {a.lam:g} is not in the run's grid {prof.lams}")
    jobs = table1.make_jobs(prof, Path("/tmp/lft-probe"), 0, a.data_dir, a.lam, lrs)
    lft_job = next(j for j in jobs if j.label.startswith(f"FO-LFT [{a.train}]"))
    t0 = time.perf_counter()
    if a.checkpoint:
        lft, _, _ = checkpoint.load(a.checkpoint)
    else:
        family = build_family(lft_job.family)
        lft = Method(MethodConfig.from_dict(lft_job.method), family, seed=0)
        MetaTrainer(lft, family, TrainConfig(**lft_job.train)).train()
        print(f"meta-trained at lambda={a.lam:g} in {(time.perf_counter() - t0) / 60:.1f} min")
        if a.save:
            checkpoint.save(a.save, lft, family)
    out = {}
    for source in table1.SOURCES if a.train != "mnist" else ["mnist"]:
        adam_job = next(j for j in jobs if j.label.startswith(f"Adam ({source})"))
        rule = {**adam_job.method["rule"], "lr": adam_job.lr}
        adam = Method(MethodConfig.from_dict({**adam_job.method, "rule": rule}),
                      build_family(adam_job.tests[source]), 0)
        (la, ld), (aa, ad) = (final(m, lft_job.tests[source], a.tasks) for m in (lft, adam))
        print(f"{source:8s} lambda={a.lam:g}  FO-LFT {la.mean():.3f} ± {ci(la):.3f} / "
              f"{ld.mean():.3f}   Adam (lr {adam_job.lr:g}) {aa.mean():.3f} ± {ci(aa):.3f} / "
              f"{ad.mean():.3f}   LFT - Adam: ASR {float((la - aa).mean()) * 100:+.1f} ± "
              f"{ci(la - aa) * 100:.1f} points, distortion {float((ld - ad).mean()):+.3f} ± "
              f"{ci(ld - ad):.3f}",
              flush=True)
        out[source] = {"lft_asr": float(la.mean()), "lft_distortion": float(ld.mean()),
                       "adam_asr": float(aa.mean()), "adam_distortion": float(ad.mean())}
    return out


if __name__ == "__main__":
    main()
