"""Does the C&W confidence kappa limit how well a fixed-budget UAP transfers to test images?

uap-rivals' fine-tuners minimise the C&W margin with kappa = 0 on a task's 10 fine-tuning
images, which is flat once those images are fooled; ART's per-image attacks step past the
boundary. This probe fine-tunes projected SGD (uap-rivals' strongest hand-designed rule) under
the committed run's budget and step size, with the margin clamped at ``-kappa`` for several
kappa, on ``--tasks`` tasks per source drawn from **meta-training** images (the ``select``
stream, which neither meta-training nor testing reads), and prints held-out-image ASR at
steps 5, 10 and 20 (± 95% CI) with the paired difference against kappa = 0.

    python probes/uap_kappa.py --data-dir ../shared/data          # ~2 min, default victims
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lft.experiments.uap_rivals import UAPRivalsProfile, uap_config
from lft.meta import Method, evaluate, preset
from lft.tasks import build_family

ROOT = Path(__file__).resolve().parents[1]
STEPS = (5, 10, 20)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--results", default=str(ROOT / "results" / "uap-rivals" / "results.json"),
                   help="the uap-rivals run whose eps and tuned sgd step size to use")
    p.add_argument("--kappas", default="0,1,3,10")
    p.add_argument("--tasks", type=int, default=200)
    a = p.parse_args(argv)
    doc = json.loads(Path(a.results).read_text())
    prof, cfg = UAPRivalsProfile.from_dict(doc["config"]["profile"]), doc["config"]
    kappas = [float(k) for k in a.kappas.split(",")]
    for source in ("mnist", "cifar10"):
        eps = cfg["eps"][source]
        lr = cfg["tuning"][source]["rules"]["sgd"]["lr"]
        print(f"{source}: ||delta||_2 <= {eps:g}, projected SGD lr {lr:g}, {a.tasks} "
              f"meta-training tasks; held-out-image ASR (%) at steps {STEPS}")
        base = None
        for kappa in kappas:
            family = build_family({**uap_config(source, prof, a.data_dir, eps), "kappa": kappa})
            method = Method(preset("sgd", base_lr=lr, horizon=max(STEPS)), family)
            asr = evaluate(method, family, n_tasks=a.tasks, steps=max(STEPS), purpose="select",
                           progress=False, record=[0, *STEPS])["asr"]
            cells = [f"{100 * float(asr.mean()[i + 1]):.1f} ± {100 * float(asr.ci95()[i + 1]):.1f}"
                     for i in range(len(STEPS))]
            line = f"  kappa {kappa:g}: " + " / ".join(cells)
            if base is None:
                base = asr
            else:
                diff = type(asr)("asr", asr.values - base.values, asr.steps)
                mean, ci = diff.mean(), diff.ci95()
                line += "   vs kappa 0: " + " / ".join(
                    f"{100 * float(mean[i + 1]):+.1f} ± {100 * float(ci[i + 1]):.1f}"
                    for i in range(len(STEPS)))
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
