"""What every ``lft`` sub-command shares: the one-line user error and the parser that prints it.

User errors (bad options, missing files) print one line ``lft: error: ...`` and exit with
status 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys

from lft.validation import one_line, positive_arg


class UserError(Exception):
    """A problem with what the user asked for; reported without a traceback."""


class Parser(argparse.ArgumentParser):
    """``argparse`` whose usage errors are one line ``lft: error: ...`` (status 2), not the
    usage block plus an error, so every user error of ``lft`` looks the same."""

    def error(self, message: str):
        sys.stderr.write(f"lft: error: {one_line(message)}; see '{self.prog} --help'\n")
        sys.exit(2)


def add_threads(parser: argparse.ArgumentParser) -> None:
    """The ``--threads`` option of the commands that run tensors in this process."""
    parser.add_argument("--threads", type=positive_arg(int), default=None, metavar="N",
                        help="intra-op CPU threads of this process (default: $OMP_NUM_THREADS, "
                             "else 1 for sine, else the cores the load average leaves free)")


def add_data_dir(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """The ``--data-dir`` option: where the named image sources are."""
    parser.add_argument("--data-dir", default=None, help=help or (
        "image data folder (default $LFT_DATA_DIR, else the user cache folder)"))


def add_source(parser: argparse.ArgumentParser, shots: bool = False,
               queries: int | None = 15) -> None:
    """``--source`` (a named data set or the path of a user's image source), ``--model`` and
    ``--ways`` of ``--task classification`` (and ``--shots``/``--queries`` when asked)."""
    parser.add_argument("--source", default=None, metavar="PATH|NAME", help=(
        "image source of --task classification: mnist, cifar10, or your own: an IDX folder "
        "like MNIST's, an image tree train/<class>/*.png + test/..., CIFAR-style batches, or "
        "a .tar.gz of one"))
    parser.add_argument("--model", default=None, choices=("mlp", "conv4", "lenet5"),
                        help="classifier of --task classification (default mlp)")
    parser.add_argument("--ways", type=positive_arg(int), default=2,
                        help="classes per task (default 2)")
    if shots:
        parser.add_argument("--shots", type=positive_arg(int), default=5,
                            help="fine-tuning images per class (default 5)")
        parser.add_argument("--queries", type=positive_arg(int), default=queries,
                            help=f"validation images per class, and as many test images "
                                 f"(default {queries})")


def source_family(a):
    """The family of ``--task classification --source ...`` (``None`` for a named ``--task``,
    after refusing ``--source``/``--model`` with it)."""
    from lft.tasks import build_family

    if getattr(a, "task", None) != "classification":
        if a.source is not None or a.model is not None:
            named = f"--task {a.task} is a named family" if a.task else "no --task was given"
            raise UserError(f"--source/--model choose the data and model of --task "
                            f"classification, and {named}; fix: pass --task classification "
                            "--source PATH")
        return None
    if a.source is None:
        raise UserError("--task classification needs --source PATH (or mnist, cifar10)")
    config = {"task": "classification", "source": a.source, "model": a.model or "mlp",
              "ways": a.ways, "data_dir": a.data_dir}
    config.update({k: getattr(a, k) for k in ("shots", "queries") if hasattr(a, k)})
    return build_family(config)
