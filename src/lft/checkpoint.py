"""Checkpoints: one safetensors file of tensors with the JSON configuration in its header.

Loading never executes code: safetensors holds raw tensors and a JSON header, nothing is
unpickled. Writes are atomic (temporary file in the same folder, then ``os.replace``), so a
crash mid-write never corrupts an existing checkpoint.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from lft.meta.learners import Method, MethodConfig
from lft.tasks import TaskFamily, build_family

FORMAT = "lft-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, of the wrong kind, or inconsistent with its configuration."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(path: str | Path, method: Method, family: TaskFamily, extra: dict | None = None) -> Path:
    """Save ``method``'s meta-learned tensors and the configuration that rebuilds it."""
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in method.state_dict().items()}
    meta = {"format": FORMAT, "version": str(VERSION),
            "method": json.dumps(method.config.to_dict()),
            "family": json.dumps(family.config()),
            "extra": json.dumps(extra or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and parsed header of a checkpoint, with a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: pass the .safetensors file that "
                              "'lft train' wrote")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a safetensors checkpoint ({e}); lft reads only "
                              "checkpoints written by 'lft train' and never unpickles files"
                              ) from None
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not an lft checkpoint "
                              "(its header has no 'format: lft-checkpoint')")
    try:
        meta = {k: json.loads(header[k]) for k in ("method", "family", "extra")}
    except (KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} has a damaged configuration header ({e})") from None
    meta["version"] = int(header.get("version", "0"))
    return tensors, meta


def load(path: str | Path) -> tuple[Method, TaskFamily, dict]:
    """Rebuild the method and its task family from a checkpoint; returns ``extra`` too."""
    tensors, meta = read(path)
    family = build_family(meta["family"])
    method = Method(MethodConfig.from_dict(meta["method"]), family)
    try:
        method.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: its tensors do not match its configuration ({e})"
                              ) from None
    return method, family, meta["extra"]
