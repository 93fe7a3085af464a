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
