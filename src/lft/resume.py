"""Resumable meta-training runs: periodic checkpoints, a clean stop on signals, resume.

:class:`Run` is the one way a meta-training run meets the disk, for ``lft train`` (a run
folder: ``config.json``, ``metrics.jsonl``, ``checkpoint.safetensors``) and for every job of
``lft reproduce`` (``OUT/checkpoints/KEY.safetensors`` and ``OUT/logs/KEY.jsonl``).

A run's checkpoint is rewritten atomically every few iterations
with the method's parameters *and* the trainer's state, so that ``kill -9`` at any moment loses
at most the iterations since the last save, and resuming with the same seed reaches the same
weights, bit for bit on CPU, as a run that was never interrupted. The run's configuration is
stored with it; a resume whose configuration differs is refused, naming the fields.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

from lft import checkpoint
from lft.meta.loggers import TENSORBOARD_FOLDER, run_logger
from lft.meta.trainer import MetaTrainer
from lft.safefiles import atomic_write_bytes

CHECKPOINT = "checkpoint.safetensors"
METRICS = "metrics.jsonl"
CONFIG = "config.json"


def _flatten(obj, prefix: str = "") -> dict:
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: obj}


def config_differences(saved: dict, now: dict) -> list[str]:
    """``field (checkpoint X, now Y)`` for every dotted field where two configurations differ."""
    a, b = (_flatten(json.loads(json.dumps(c))) for c in (saved, now))
    return [f"{k} (checkpoint {a.get(k, '-')}, now {b.get(k, '-')})"
            for k in sorted(set(a) | set(b)) if a.get(k, "-") != b.get(k, "-")]


def run_config(trainer: MetaTrainer, **more) -> dict:
    """The configuration a resumed run must match: method, family, outer loop and ``more``."""
    return {"method": trainer.method.config.to_dict(), "family": trainer.family.config(),
            "train": dict(trainer.config.__dict__), **more}


def resume(path: str | Path, trainer: MetaTrainer, config: dict) -> int:
    """Load the checkpoint at ``path`` into ``trainer`` (and its method); returns its iteration.

    Raises :class:`~lft.checkpoint.CheckpointError` if the file is not a resumable checkpoint
    or was written by a run with another configuration.
    """
    path = Path(path)
    tensors, meta = checkpoint.read(path)
    state = checkpoint.read_training_state(path)
    if state is None:
        raise checkpoint.CheckpointError(f"{path} holds no training state to resume from (it "
                                         "was written without one); start a new run instead")
    saved = {"method": meta["method"], "family": meta["family"],
             **meta["extra"].get("run", {})}
    diff = config_differences(saved, config)
    if diff:
        raise checkpoint.CheckpointError(
            f"cannot resume from {path}: the configuration differs in " + "; ".join(diff)
            + "; rerun with the checkpoint's options, or start a new run in another --out")
    try:
        trainer.method.load_state_dict(tensors, strict=True)
        trainer.load_training_state(*state)
    except (RuntimeError, ValueError) as e:
        raise checkpoint.CheckpointError(f"{path}: {e}") from None
    trainer.replicas.broadcast_(list(trainer.method.state_dict().values()))
    return trainer.stats.iterations


def save(path: str | Path, trainer: MetaTrainer, config: dict) -> Path | None:
    """Write a resumable checkpoint (collective: every process calls it, rank 0 writes)."""
    state = trainer.training_state()
    if not trainer.replicas.is_main:
        return None
    extra = {"train": dict(trainer.config.__dict__), "stats": dict(trainer.stats.__dict__),
             "run": {k: v for k, v in config.items() if k not in ("method", "family")},
             "complete": trainer.stats.iterations >= trainer.config.iterations}
    return checkpoint.save(path, trainer.method, trainer.family, extra=extra,
                           trainer_state=state)


def truncate_log(path: str | Path, start: int) -> None:
    """Drop the records of iterations ``>= start`` from a JSON-lines log (they will be redone)."""
    path = Path(path)
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("iteration", 0) < start:
                keep.append(line)
        except (json.JSONDecodeError, AttributeError):  # a line cut short by kill -9
            continue
    atomic_write_bytes(path, "".join(f"{line}\n" for line in keep).encode())


class StopOnSignal:
    """Within this context, SIGINT (Ctrl-C) and SIGTERM ask for a clean stop.

    The first signal sets :attr:`received` (the trainer finishes its meta-iteration, saves a
    checkpoint and returns); a second SIGINT raises ``KeyboardInterrupt`` at once. ``announce``
    says so on stderr (rank 0 only). Outside the main thread signals cannot be caught, and
    nothing is installed.
    """

    def __init__(self, announce: bool = True):
        self.announce, self.received, self._old = announce, None, {}

    def __call__(self) -> bool:
        return self.received is not None

    def _handle(self, signum, frame):
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.received is None:
            self.received = signal.Signals(signum).name
            if self.announce:
                print(f"lft: {self.received}: finishing this meta-iteration, then saving a "
                      "checkpoint (Ctrl-C again quits without saving)", file=sys.stderr,
                      flush=True)

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}


class Run:
    """One meta-training run on disk: its resumable checkpoint, its metrics log and (for
    ``lft train``) its ``config.json``.

    :meth:`start` begins afresh or resumes; :meth:`train` meta-trains with a checkpoint every
    ``save_every`` iterations and after the last one. Only the main process (rank 0) writes.
    """

    def __init__(self, checkpoint: str | Path, log: str | Path | None = None,
                 config_file: str | Path | None = None, is_main: bool = True,
                 tensorboard: str | Path | None = None):
        self.checkpoint = Path(checkpoint)
        self.log = None if log is None else Path(log)
        self.config_file = None if config_file is None else Path(config_file)
        self.tensorboard = None if tensorboard is None else Path(tensorboard)
        self.is_main = is_main

    @classmethod
    def folder(cls, path: str | Path, is_main: bool = True, tensorboard: bool = False) -> Run:
        """The run folder of ``lft train``: ``PATH/{checkpoint.safetensors, metrics.jsonl,
        config.json}`` and, with ``tensorboard``, event files in ``PATH/tensorboard/``."""
        path = Path(path)
        return cls(path / CHECKPOINT, path / METRICS, path / CONFIG, is_main,
                   path / TENSORBOARD_FOLDER if tensorboard else None)

    @classmethod
    def job(cls, out: str | Path, key: str) -> Run:
        """A reproduction job's run: ``OUT/checkpoints/KEY.safetensors``, ``OUT/logs/KEY.jsonl``."""
        out = Path(out)
        return cls(out / "checkpoints" / f"{key}.safetensors", out / "logs" / f"{key}.jsonl")

    def resumable(self, config: dict | None = None) -> bool:
        """Whether the checkpoint exists with a training state (and, given ``config``, was
        written by a run of that configuration)."""
        try:
            _, meta = checkpoint.read(self.checkpoint)
            if checkpoint.read_training_state(self.checkpoint) is None:
                return False
        except (OSError, ValueError):  # absent or damaged: nothing to resume
            return False
        if config is None:
            return True
        saved = {"method": meta["method"], "family": meta["family"],
                 **meta["extra"].get("run", {})}
        return not config_differences(saved, config)

    def start(self, trainer: MetaTrainer, config: dict, resuming: bool = False) -> int:
        """Resume ``trainer`` from the checkpoint (``resuming``), or begin afresh: the folder is
        made, the log emptied and the configuration written. Returns the first iteration to
        run. On rank 0 ``trainer.log`` writes the metrics log (and the tensorboard events, whose
        steps from the first one run on are hidden: a resumed run's redone iterations, or an
        older run's in the same folder); elsewhere it is ``None``."""
        start = 0
        if resuming:
            start = resume(self.checkpoint, trainer, config)
            if self.is_main and self.log is not None:
                truncate_log(self.log, start)
        elif self.is_main:
            self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
            if self.log is not None:
                self.log.unlink(missing_ok=True)
            if self.config_file is not None:
                atomic_write_bytes(self.config_file, json.dumps(config, indent=1).encode())
        if self.is_main and self.log is not None:
            trainer.log = run_logger(self.log, self.tensorboard, purge_step=start)
        elif not self.is_main:
            trainer.log = None
        return start

    def train(self, trainer: MetaTrainer, config: dict, progress: bool = False,
              save_every: int = 100, stop=None) -> Path:
        """Meta-train from where :meth:`start` left ``trainer``, saving every ``save_every``
        iterations, after the last and when ``stop()`` turns true; returns the checkpoint."""
        try:
            trainer.train(progress=progress and self.is_main,
                          save=lambda: save(self.checkpoint, trainer, config),
                          save_every=save_every, stop=stop)
        finally:
            if hasattr(trainer.log, "close"):
                trainer.log.close()
        return self.checkpoint


__all__ = ["CHECKPOINT", "CONFIG", "METRICS", "Run", "StopOnSignal", "config_differences",
           "resume", "run_config", "save", "truncate_log"]
