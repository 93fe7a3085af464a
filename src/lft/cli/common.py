"""What every ``lft`` sub-command shares: the one-line user error and the parser that prints it.

User errors (bad options, missing files) print one line ``lft: error: ...`` and exit with
status 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys

from lft.validation import non_negative_arg, one_line, positive_arg


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


def add_source(parser: argparse.ArgumentParser, shots: bool = False) -> None:
    """``--source`` (a named data set or the path of a user's image source), ``--model``,
    ``--ways``, ``--victim`` and ``--lam`` of ``--task classification|uap`` (and ``--shots``/
    ``--queries`` when asked)."""
    parser.add_argument("--source", default=None, metavar="PATH|NAME", help=(
        "image source of --task classification|uap: mnist, cifar10, or your own: an IDX folder "
        "like MNIST's, an image tree train/<class>/*.png + test/..., CIFAR-style batches, or "
        "a .tar.gz of one"))
    parser.add_argument("--model", default=None, choices=("mlp", "conv4", "lenet5"),
                        help="classifier of --task classification (default mlp)")
    parser.add_argument("--ways", type=positive_arg(int), default=2,
                        help="classes per task (default 2)")
    parser.add_argument("--victim", default=None, metavar="V.safetensors",
                        help="victim classifier of --task uap (lft victims train --source PATH "
                             "--out V.safetensors)")
    parser.add_argument("--lam", type=non_negative_arg, default=None,
                        help="weight of ||delta||^2 in the loss of --task uap (default: the "
                             "checkpoint's own, else 0.01)")
    if shots:
        parser.add_argument("--shots", type=positive_arg(int), default=5,
                            help="fine-tuning images per class (default 5)")
        parser.add_argument("--queries", type=positive_arg(int), default=None,
                            help="validation images per class, and as many test images "
                                 "(default 15; 10 for --task uap)")


def source_family(a, uap: dict | None = None):
    """The family of ``--task classification|uap --source ...`` (``None`` for a named
    ``--task``, after refusing the options of a source with it). ``uap``: the UAP loss
    settings (``lam``, ``queries``) a UAP task takes unless the options give them, e.g. those a
    fine-tuner was meta-trained with."""
    from lft.tasks import build_family
    from lft.tasks.presets import SOURCE_TASKS, UAP_DEFAULTS

    task = getattr(a, "task", None)
    if task not in SOURCE_TASKS:
        given = [f"--{k}" for k in ("source", "model", "victim", "lam")
                 if getattr(a, k, None) is not None]
        if given:
            named = f"--task {task} is a named family" if task else "no --task was given"
            raise UserError(f"{'/'.join(given)} choose the data, model or victim of --task "
                            f"classification|uap, and {named}; fix: pass --task classification "
                            "(or uap --victim V.safetensors) --source PATH")
        return None
    if a.source is None:
        raise UserError(f"--task {task} needs --source PATH (or mnist, cifar10)")
    sizes = {k: getattr(a, k) for k in ("shots", "queries") if getattr(a, k, None) is not None}
    if task == "uap":
        if a.model is not None:
            raise UserError("--model chooses the classifier of --task classification; a UAP "
                            "task fine-tunes a perturbation against --victim")
        if a.victim is None:
            raise UserError("--task uap needs --victim V.safetensors, a classifier of the "
                            "source's images; fix: lft victims train --source PATH --out "
                            "V.safetensors")
        settings = {**UAP_DEFAULTS, **(uap or {}), **sizes}
        if a.lam is not None:
            settings["lam"] = a.lam
        return build_family({**settings, "task": "uap", "source": a.source, "victim": a.victim,
                             "ways": a.ways, "data_dir": a.data_dir})
    if a.victim is not None or a.lam is not None:
        raise UserError("--victim/--lam set the victim and loss of --task uap; --task "
                        "classification has neither")
    config = {"task": "classification", "source": a.source, "model": a.model or "mlp",
              "ways": a.ways, "data_dir": a.data_dir, **sizes}
    return build_family(config)
