"""The ``lft`` command line: train, evaluate, reproduce, data, victims, attack, analyze, plot.

One module per sub-command group; each defines ``register(subparsers)``, which adds its
parsers and sets their ``handler`` default to a function ``(args) -> exit status``. This
package is the only importer of the reproductions (:mod:`lft.experiments`).

User errors (bad options, missing files) print one line ``lft: error: ...`` and exit with
status 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from lft.cli.common import Parser, UserError
from lft.cli.reproduce import ARTEFACTS
from lft.validation import one_line

#: The modules that add the sub-commands, in ``lft --help`` order.
COMMAND_MODULES: tuple[str, ...] = ("lft.cli.train", "lft.cli.evaluate", "lft.cli.reproduce",
                                    "lft.cli.data", "lft.cli.analyze", "lft.cli.attack",
                                    "lft.cli.plot", "lft.cli.export")
#: Commands that run tensors in this process and take ``--threads``.
THREADED = ("train", "evaluate", "reproduce")


def build_parser() -> argparse.ArgumentParser:
    """The ``lft`` parser with every sub-command of :data:`COMMAND_MODULES`."""
    p = Parser(prog="lft", description="Learned fine-tuners for few-shot "
               "learning: meta-train, evaluate, reproduce the paper.")
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return p


def _small_job(a) -> bool:
    """Whether the command works on sine-sized tensors, where one thread is fastest."""
    if a.command == "reproduce":
        return a.artefact == "figure4"
    return (getattr(a, "task", None) or "") == "sine"


def main(argv: list[str] | None = None) -> int:
    """Run ``lft ARGV``; returns the exit status (2 for a user error, printed as one line)."""
    parser = build_parser()
    a = parser.parse_args(argv)
    from lft.meta.distributed import DistributedError
    from lft.perf import configure_allocator, configure_threads

    configure_allocator()
    try:
        if a.command in THREADED:
            configure_threads(a.threads, small=_small_job(a))
        return a.handler(a)
    except (UserError, ValueError) as e:  # incl. DataError, CheckpointError
        print(f"lft: error: {one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # a path that cannot be read or written: name it
        where = f": {e.filename}" if e.filename else ""
        print(f"lft: error: {one_line(e.strerror or e)}{where}", file=sys.stderr)
        return 2
    except DistributedError as e:  # another rank failed: not a user error (status 1)
        print(f"lft: error: {one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lft: interrupted", file=sys.stderr)
        return 130


__all__ = ["ARTEFACTS", "COMMAND_MODULES", "Parser", "UserError", "build_parser", "main"]
