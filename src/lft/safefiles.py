"""Reading the safetensors files lft writes (checkpoints, victims): tensors and header, never
unpickling, with one clear error for a missing, unreadable or foreign file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open


def read_tensors(path: str | Path, fmt: str, kind: str, fix: str,
                 error: type[Exception] = ValueError) -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, header)`` of the safetensors file at ``path`` whose header says
    ``format: fmt``.

    A missing file, one safetensors cannot read (a pickle, a truncated download) or one without
    that format raises ``error`` naming the ``kind`` of file expected (``"checkpoint"``) and
    ``fix``, how to get a good one. Nothing in the file is executed.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"no {kind} at {path}: {fix}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise error(f"{path} is not a safetensors {kind} or is damaged ({e}); lft never "
                    f"unpickles files: {fix}") from None
    if header.get("format") != fmt:
        raise error(f"{path} is a safetensors file but not an lft {kind} (its header has no "
                    f"'format: {fmt}')")
    return tensors, header


def fsync_path(path: str | Path, directory: bool = False) -> None:
    """Flush ``path`` to disk, so that a power loss cannot leave a renamed but empty file."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # some systems cannot open or fsync a directory; the rename stays atomic
        if not directory:
            raise


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; on success it is flushed to disk and
    renamed over ``path`` (and the folder flushed), on any error deleted: a crash mid-write
    never leaves a truncated ``path`` nor corrupts an existing one. The one atomic write of
    the package (checkpoints, victims, results, caches, downloads, packaged fine-tuners)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent, directory=True)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
