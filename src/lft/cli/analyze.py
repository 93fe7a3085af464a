"""``lft analyze ACTION``: analyses of meta-trained fine-tuners (registered by ``lft.cli``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lft.validation import positive_arg


def _shots(text: str) -> tuple[int, ...]:
    try:
        shots = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}"
                                         ) from None
    if not shots or min(shots) < 1:
        raise argparse.ArgumentTypeError(f"shots must be positive integers, got {text!r}")
    return tuple(sorted(set(shots)))


def register(subparsers) -> None:
    """Add ``analyze`` (with its ``gradient-gap`` action) to the ``lft`` command line."""
    from lft.analysis.gradient_gap import DEFAULT_SHOTS

    p = subparsers.add_parser("analyze", help="analyses of fine-tuners (gradient-gap: "
                              "Theorem 1, LFT vs L2O meta-gradients against shots)")
    p.add_argument("action", choices=("gradient-gap",))
    p.add_argument("--rule", default="sine-fo-lft",
                   help="a pretrained name, a checkpoint path, or 'fresh' (an untrained LSTM "
                        "per seed); default sine-fo-lft")
    p.add_argument("--shots", type=_shots, default=DEFAULT_SHOTS,
                   help="comma-separated numbers of fine-tuning examples "
                        f"(default {','.join(map(str, DEFAULT_SHOTS))})")
    p.add_argument("--val-points", type=positive_arg(int), default=None,
                   help="validation points per task (default: as many as shots)")
    p.add_argument("--tasks", type=positive_arg(int), default=32, help="tasks per seed")
    p.add_argument("--seeds", type=positive_arg(int), default=3)
    p.add_argument("--horizon", type=positive_arg(int), default=20, help="fine-tuning steps K")
    p.add_argument("--normalize", action="store_true",
                   help="divide each meta-loss by its initial loss, as meta-training does "
                        "(default: the raw losses of Eqs. 4 and 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/gradient-gap")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(handler=run)


def run(a) -> int:
    """Handler of ``lft analyze gradient-gap``."""
    from lft.analysis.gap_report import run as run_gap
    from lft.analysis.gradient_gap import GapSettings

    if Path(a.out).exists() and not Path(a.out).is_dir():
        raise ValueError(f"--out {a.out} is a file; pass a folder for the table and the plot")
    settings = GapSettings(shots=a.shots, tasks=a.tasks, seeds=a.seeds, horizon=a.horizon,
                           val_points=a.val_points, normalize=a.normalize, seed=a.seed)
    run_gap(a.rule, a.out, settings, progress=not a.quiet)
    print((Path(a.out) / "gradient_gap.md").read_text())
    print(f"wrote gradient_gap.json, gradient_gap.md, gradient_gap.png in {a.out}")
    return 0


__all__ = ["register", "run"]
