"""``lft plot``: draw a run's meta-loss curve and its evaluation curves to a PNG."""

from __future__ import annotations


def register(sub) -> None:
    """Add ``plot`` to the ``lft`` sub-command parsers."""
    p = sub.add_parser("plot", help="draw a run's meta-loss and evaluation curves to a PNG",
                       description="Draw RUN's meta-loss curve (RUN/metrics.jsonl of lft train, "
                                   "or RUN/logs/*.jsonl of lft reproduce) and, when present, "
                                   "its evaluation curves (per-step mean with 95%% CI bands "
                                   "from results documents in RUN, e.g. RUN/results.json or "
                                   "lft evaluate --json RUN/rows.json) to a PNG.")
    p.add_argument("run", metavar="RUN",
                   help="a lft train --out or lft reproduce --out folder (or one metrics.jsonl "
                        "or results.json file)")
    p.add_argument("--out", default=None, metavar="FILE.png",
                   help="the image to write (default RUN/plot.png)")
    p.add_argument("--results", action="append", default=[], metavar="FILE.json",
                   help="also draw the evaluation curves of this results file (lft evaluate "
                        "--json, lft reproduce); repeatable")
    p.set_defaults(handler=cmd_plot)


def cmd_plot(a) -> int:
    """``lft plot``: collect the curves, draw them, print the path written."""
    from lft.analysis.run_plot import plot_run

    if a.out and not a.out.lower().endswith(".png"):
        from lft.cli.common import UserError
        raise UserError(f"--out {a.out}: lft plot writes PNG images; pass a name ending in .png")
    print(plot_run(a.run, a.out, tuple(a.results)))
    return 0
