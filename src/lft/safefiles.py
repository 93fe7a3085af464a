"""Reading the safetensors files lft writes (checkpoints, victims): tensors and header, never
unpickling, with one clear error for a missing, unreadable or foreign file."""

from __future__ import annotations

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
