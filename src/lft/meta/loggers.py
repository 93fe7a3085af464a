"""Where a meta-training run's log records go: composed ``log`` callbacks and TensorBoard.

:class:`~lft.meta.trainer.MetaTrainer` calls one ``log(record)`` per logged meta-iteration.
A run that should be watched in more than one place composes callbacks with :class:`FanOut`
instead of the trainer knowing about each destination: ``lft train`` always writes
``metrics.jsonl`` (:func:`~lft.meta.trainer.jsonl_logger`) and, with ``--log tensorboard``,
also event files (:class:`TensorboardLogger`).

TensorBoard is an optional extra (``pip install tensorboard``, or ``pip install -e
'.[tensorboard]'``): this module imports it only when a :class:`TensorboardLogger` is made,
and :func:`require_tensorboard` says, before a run starts, whether it can be.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from lft.meta.trainer import jsonl_logger

INSTALL = "pip install tensorboard"
#: The folder of a run (``lft train --out RUN``) that holds its TensorBoard event files.
TENSORBOARD_FOLDER = "tensorboard"
#: What ``torch.utils.tensorboard.SummaryWriter`` needs importable to write event files.
TENSORBOARD_MODULES = ("tensorboard", "torch.utils.tensorboard")


class TensorboardUnavailable(ImportError):
    """The ``tensorboard`` package (needed to write event files) is not installed."""


def require_tensorboard(modules: tuple[str, ...] = TENSORBOARD_MODULES) -> None:
    """Raise :class:`TensorboardUnavailable`, naming the install command, unless ``modules``
    import; a command calls it before it creates anything, so a missing extra costs no run."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise TensorboardUnavailable(
                f"logging to tensorboard needs the tensorboard package, which does not import "
                f"({e}); fix: `{INSTALL}` (or the extra: pip install -e '.[tensorboard]'), or "
                "log to metrics.jsonl only") from None


class FanOut:
    """One ``log`` callback that passes each record to several, in order.

    ``close()`` closes every callback that has a ``close`` method (a TensorBoard writer must
    be flushed and closed; a plain function such as ``jsonl_logger``'s has nothing to close).
    """

    def __init__(self, *logs: Callable[[dict], None] | None):
        self.logs = [log for log in logs if log is not None]

    def __call__(self, record: dict) -> None:
        for log in self.logs:
            log(record)

    def close(self) -> None:
        """Close the callbacks that can be closed (each once, errors after all are tried)."""
        errors = []
        for log in self.logs:
            close = getattr(log, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as e:  # noqa: BLE001 -- closed the others first
                    errors.append(e)
        if errors:
            raise errors[0]


class TensorboardLogger:
    """A ``log`` callback that writes each record's numbers as TensorBoard scalars.

    Every numeric field but ``iteration`` becomes a scalar tagged with the field's name
    (``meta_loss``, ``final_loss``, ``grad_norm``, ``meta_lr``, ``meta_loss_ema``, ...) at
    ``global_step = record["iteration"]``, so the curves read the same as ``metrics.jsonl``.
    The writer is flushed after every record, so a run can be watched while it trains
    (``tensorboard --logdir RUN/tensorboard``).

    ``purge_step`` (a resumed run: the iteration it continues from) hides events that a
    killed run had written at that step or later, as ``metrics.jsonl`` is truncated there;
    new events are appended to the same folder.
    """

    def __init__(self, folder: str | Path, purge_step: int | None = None):
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.folder = Path(folder)
        self.writer = SummaryWriter(log_dir=str(self.folder), purge_step=purge_step)

    def __call__(self, record: dict) -> None:
        step = int(record["iteration"])
        for key, value in record.items():
            if key == "iteration" or isinstance(value, bool):
                continue
            if isinstance(value, (int, float)):
                self.writer.add_scalar(key, float(value), global_step=step)
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()


def run_logger(jsonl: str | Path, tensorboard: str | Path | None = None,
               purge_step: int | None = None) -> FanOut:
    """The ``log`` callback of a run: JSON lines appended to ``jsonl`` and, when
    ``tensorboard`` names a folder, scalars written there too (``purge_step``: see
    :class:`TensorboardLogger`). Call its ``close()`` when training ends."""
    board = None if tensorboard is None else TensorboardLogger(tensorboard, purge_step)
    return FanOut(jsonl_logger(jsonl), board)


__all__ = ["INSTALL", "TENSORBOARD_FOLDER", "FanOut", "TensorboardLogger",
           "TensorboardUnavailable", "require_tensorboard", "run_logger"]
