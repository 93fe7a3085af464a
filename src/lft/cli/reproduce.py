"""``lft reproduce ARTEFACT``: a figure or table of the paper, or an artefact beyond it."""

from __future__ import annotations

from pathlib import Path

from lft.cli.common import UserError, add_threads
from lft.validation import positive_arg

ARTEFACTS = ("figure4", "table1", "table2", "budgets", "uap-rivals")


def register(sub) -> None:
    """Add ``reproduce`` to the ``lft`` sub-command parsers."""
    r = sub.add_parser("reproduce", help="reproduce a figure or table of the paper")
    r.add_argument("artefact", choices=ARTEFACTS)
    r.add_argument("--profile", default="quick",
                   help="quick (a check in minutes) or paper (the committed run); an artefact "
                        "may have more (budgets: paper-mid)")
    r.add_argument("--out", default=None,
                   help="output folder (default results/ARTEFACT for the paper profile, "
                        "results/ARTEFACT-quick for the quick one)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--workers", type=positive_arg(int), default=None,
                   help="parallel processes (default: the profile's, at most the cores)")
    r.add_argument("--data-dir", default=None,
                   help="image data folder for table1/table2 (default $LFT_DATA_DIR, else the "
                        "user cache folder)")
    r.add_argument("--quiet", action="store_true")
    r.add_argument("--resume", action="store_true",
                   help="continue a run killed in --out: jobs it finished (OUT/jobs) are read "
                        "back, the others run; the rows equal an uninterrupted run's")
    add_threads(r)
    r.set_defaults(handler=cmd_reproduce)


def cmd_reproduce(a) -> int:
    """``lft reproduce``: run the artefact's profile into its output folder."""
    import importlib

    from lft.experiments.results import default_out

    module = importlib.import_module(f"lft.experiments.{a.artefact.replace('-', '_')}")
    out = Path(a.out or default_out(a.artefact, a.profile))
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a folder for the results")
    kwargs = {"data_dir": a.data_dir} if a.artefact != "figure4" else {}
    existed = out.exists()
    try:
        doc = module.reproduce(profile=a.profile, out=out, seed=a.seed, workers=a.workers,
                               progress=not a.quiet, resume=a.resume, **kwargs)
    except (UserError, ValueError, OSError):
        if not existed and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a folder this run created and never wrote to: leave nothing behind
        raise
    written = sorted(p.name for p in out.iterdir() if p.suffix in (".json", ".md", ".png"))
    for name in written:
        if name.endswith(".md"):
            print((out / name).read_text())
    print(f"wrote {', '.join(str(out / n) for n in written)} "
          f"in {doc['wall_time_s'] / 60:.1f} min")
    return 0
